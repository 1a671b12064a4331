# libFuzzer target for the server's request parser (every src/server/api*.c: the fields,
# the chat conversation, grammars, the /v1/responses and /v1/messages adapters and their
# store, the response side; and the request lifetime in sched.c), with the shipped model's
# tokenizer. The glob keeps the link whole when the request path gains a file.
if(CELLM_FUZZ AND MHD_LIB)
  file(GLOB CELLM_FUZZ_API CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/server/api*.c)
  cellm_fuzz_target(fuzz_request ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_request.c ${CELLM_FUZZ_API}
                    ${PROJECT_SOURCE_DIR}/src/server/sched.c)
  target_compile_definitions(fuzz_request PRIVATE
                             CELLM_FUZZ_MODEL="${PROJECT_SOURCE_DIR}/models/wordnet-llama")
endif()
