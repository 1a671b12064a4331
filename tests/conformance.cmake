# Conformance: `cellm verify` over every fixture checkpoint (logits at every position from
# prefill and from decode, and the greedy trajectory, against transformers float32).
file(GLOB CELLM_FIXTURE_DIRS LIST_DIRECTORIES true ${CELLM_FIXTURES}/*/*)
foreach(dir ${CELLM_FIXTURE_DIRS})
  if(IS_DIRECTORY ${dir} AND EXISTS ${dir}/oracle.safetensors)
    file(RELATIVE_PATH rel ${CELLM_FIXTURES} ${dir})
    add_test(NAME verify/${rel} COMMAND $<TARGET_FILE:cellm_cli> verify -m ${dir} --threads 2)
  endif()
endforeach()
