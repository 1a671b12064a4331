# libFuzzer target for the server's request parser (api.c, api_chat.c, api_out.c and the request lifetime in
# sched.c), with the shipped model's tokenizer.
if(CELLM_FUZZ AND MHD_LIB)
  cellm_fuzz_target(fuzz_request ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_request.c
                    ${PROJECT_SOURCE_DIR}/src/server/api.c ${PROJECT_SOURCE_DIR}/src/server/api_chat.c
                    ${PROJECT_SOURCE_DIR}/src/server/api_out.c
                    ${PROJECT_SOURCE_DIR}/src/server/sched.c)
  target_compile_definitions(fuzz_request PRIVATE
                             CELLM_FUZZ_MODEL="${PROJECT_SOURCE_DIR}/models/wordnet-llama")
  # the /v1/responses and /v1/messages adapters (api_out.c calls them; the target feeds them)
  target_sources(fuzz_request PRIVATE ${PROJECT_SOURCE_DIR}/src/server/api_adapt.c
                 ${PROJECT_SOURCE_DIR}/src/server/api_responses.c
                 ${PROJECT_SOURCE_DIR}/src/server/api_messages.c)
endif()
