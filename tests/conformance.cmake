# Conformance: `cellm verify` over every fixture checkpoint (logits at every position from
# prefill and from decode, and the greedy trajectory, against transformers float32).
file(GLOB CELLM_FIXTURE_DIRS LIST_DIRECTORIES true ${CELLM_FIXTURES}/*/*)
foreach(dir ${CELLM_FIXTURE_DIRS})
  if(IS_DIRECTORY ${dir} AND EXISTS ${dir}/oracle.safetensors)
    file(RELATIVE_PATH rel ${CELLM_FIXTURES} ${dir})
    add_test(NAME verify/${rel} COMMAND $<TARGET_FILE:cellm_cli> verify -m ${dir} --threads 2)
  endif()
endforeach()
# Fast mode (--precision fast: bf16/int8 activations, f16 KV cache) over the same fixtures,
# held to its own stated tolerance (README), on the best kernels and on the portable ones.
foreach(dir ${CELLM_FIXTURE_DIRS})
  if(IS_DIRECTORY ${dir} AND EXISTS ${dir}/oracle.safetensors)
    file(RELATIVE_PATH rel ${CELLM_FIXTURES} ${dir})
    add_test(NAME verify-fast/${rel}
             COMMAND $<TARGET_FILE:cellm_cli> verify -m ${dir} --threads 2 --precision fast)
    add_test(NAME verify-fast-avx2/${rel}
             COMMAND $<TARGET_FILE:cellm_cli> verify -m ${dir} --threads 2 --precision fast
                     --exec-opt isa=avx2)
    add_test(NAME verify-fast-portable/${rel}
             COMMAND $<TARGET_FILE:cellm_cli> verify -m ${dir} --threads 1 --precision fast
                     --exec-opt isa=portable)
  endif()
endforeach()
