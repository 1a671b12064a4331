# Engine-level tests: memory behaviour of loading and generation.
cellm_core_test(test_memory ${CMAKE_CURRENT_SOURCE_DIR}/test_memory.c)
# The same conformance suite on the portable kernels (no SIMD), so that every ISA path
# is held to the contract.
foreach(dir ${CELLM_FIXTURE_DIRS})
  if(IS_DIRECTORY ${dir} AND EXISTS ${dir}/oracle.safetensors)
    file(RELATIVE_PATH rel ${CELLM_FIXTURES} ${dir})
    add_test(NAME verify-portable/${rel}
             COMMAND $<TARGET_FILE:cellm_cli> verify -m ${dir} --threads 1 --exec-opt isa=portable)
    # the quantized formats of docs/formats.md also on AVX2 (verify/ takes the best level)
    if(rel MATCHES "(mxfp4|mxfp8|nvfp4|fp8|gptq|awq|blocks|gpt-oss)")
      add_test(NAME verify-avx2/${rel}
               COMMAND $<TARGET_FILE:cellm_cli> verify -m ${dir} --threads 2 --exec-opt isa=avx2)
    endif()
  endif()
endforeach()
# Executor options: the parser's table, refusals by name, and the CPU executor's keys.
cellm_core_test(test_opts ${CMAKE_CURRENT_SOURCE_DIR}/test_opts.c)
cellm_core_test(test_threadpool ${CMAKE_CURRENT_SOURCE_DIR}/test_threadpool.c)
cellm_core_test(test_batch ${CMAKE_CURRENT_SOURCE_DIR}/test_batch.c)
cellm_core_test(test_window ${CMAKE_CURRENT_SOURCE_DIR}/test_window.c)
# Prefix cache: logits after an attached prefix equal a cold run's, on every fixture.
cellm_core_test(test_prefix_cache ${CMAKE_CURRENT_SOURCE_DIR}/test_prefix_cache.c)
cellm_core_test(test_truncate ${CMAKE_CURRENT_SOURCE_DIR}/test_truncate.c)
cellm_core_test(test_seqstate ${CMAKE_CURRENT_SOURCE_DIR}/test_seqstate.c)
# The bytes one decode step reads (bench's GB/s of weights), dense and MoE.
cellm_core_test(test_info ${CMAKE_CURRENT_SOURCE_DIR}/test_info.c)
# The block pool of the CUDA executor's paged KV cache (no device needed).
cellm_core_test(test_blockpool ${CMAKE_CURRENT_SOURCE_DIR}/test_blockpool.c)
