# CUDA executor tests that call its kernels directly (built with -DCELLM_CUDA=ON only; each
# skips itself where no CUDA device is present, as on CI).
if(CELLM_CUDA)
  cellm_core_test(test_cuda_gemm ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_gemm.c)
  target_link_libraries(test_cuda_gemm PRIVATE CUDA::cudart)
  # every launcher against the CPU op (tests/gpu/run.sh runs it on the GPU machine)
  cellm_core_test(test_cuda_ops ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_ops.c)
  target_link_libraries(test_cuda_ops PRIVATE CUDA::cudart)
  cellm_core_test(test_cuda_attn ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_attn.c)
  target_link_libraries(test_cuda_attn PRIVATE CUDA::cudart)
  # the sequence-state kernels (conv windows) against the CPU's
  cellm_core_test(test_cuda_state ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_state.c)
  target_link_libraries(test_cuda_state PRIVATE CUDA::cudart)
  # the device layout of the formats of docs/formats.md, decoded on the host (no GPU needed)
  cellm_core_test(test_cuda_layout ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_layout.c)
  target_link_libraries(test_cuda_layout PRIVATE CUDA::cudart)
  # the paged KV cache end to end: paged equals contiguous, the budget's refusals
  cellm_core_test(test_cuda_kv ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_kv.c)
endif()
