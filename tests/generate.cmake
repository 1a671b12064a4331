# End-to-end text generation on the model the repository ships (real tokenizer.json).
if(EXISTS ${PROJECT_SOURCE_DIR}/models/wordnet-llama/tokenizer.json)
  foreach(m wordnet-llama wordnet-llama-4bit)
    add_test(NAME generate-e2e/${m}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/generate.sh $<TARGET_FILE:cellm_cli>
                     ${PROJECT_SOURCE_DIR}/models/${m})
    add_test(NAME verify/models/${m}
             COMMAND $<TARGET_FILE:cellm_cli> verify -m ${PROJECT_SOURCE_DIR}/models/${m} --threads 2)
  endforeach()
endif()

# The shipped model behind `cellm serve`, driven by the official openai client: greedy
# completions and chat (streamed or not) equal what `cellm generate` prints.
find_program(CELLM_NODE_DEMO node)
if(MHD_LIB AND CELLM_NODE_DEMO AND EXISTS ${PROJECT_SOURCE_DIR}/models/wordnet-llama/tokenizer.json)
  foreach(m wordnet-llama wordnet-llama-4bit)
    add_test(NAME server/demo-${m}
             COMMAND ${CELLM_NODE_DEMO} ${CMAKE_CURRENT_SOURCE_DIR}/server/demo.mjs
                     $<TARGET_FILE:cellm_cli> ${PROJECT_SOURCE_DIR}/models/${m})
    set_tests_properties(server/demo-${m} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS server)
  endforeach()
endif()

# The generation loop shared by `cellm generate` and `cellm serve` (cellm_gen_*).
cellm_unit_test(test_generate ${CMAKE_CURRENT_SOURCE_DIR}/test_generate.c)
