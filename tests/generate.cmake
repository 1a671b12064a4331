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
