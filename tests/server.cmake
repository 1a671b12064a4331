# Server tests: the real `cellm serve` on a loopback port (--port 0), driven by curl
# (tests/server/curl.sh) and by Node with the official openai client
# (tests/server/*.mjs; the client is installed into tests/server/node_modules by
# .ci/setup.d/30-server.sh, and openai.mjs skips, exit 77, without it).
# The response side of tool calls and reasoning (api_out.c), on hand-made requests.
file(GLOB CELLM_TOOL_OUT_API CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/server/api*.c)
cellm_unit_test(test_tool_out ${CMAKE_CURRENT_LIST_DIR}/test_tool_out.c ${CELLM_TOOL_OUT_API}
                ${PROJECT_SOURCE_DIR}/src/server/sched.c)
find_program(CELLM_NODE node)
find_program(CELLM_CURL curl)
find_program(CELLM_BASH bash)
if(MHD_LIB AND CELLM_NODE AND CELLM_CURL AND CELLM_BASH)
  set(srv ${CMAKE_CURRENT_SOURCE_DIR}/server)
  set(fx ${CELLM_FIXTURES})
  add_test(NAME server/curl
           COMMAND ${CELLM_BASH} ${srv}/curl.sh $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16)
  add_test(NAME server/batch-llama3-bf16
           COMMAND ${CELLM_NODE} ${srv}/batch.mjs $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16)
  add_test(NAME server/batch-qwen3-moe-q4
           COMMAND ${CELLM_NODE} ${srv}/batch.mjs $<TARGET_FILE:cellm_cli>
                   ${fx}/qwen3-moe/q4-g64-bf16-stacked)
  add_test(NAME server/batch-gemma3-q4
           COMMAND ${CELLM_NODE} ${srv}/batch.mjs $<TARGET_FILE:cellm_cli> ${fx}/gemma3/q4-g64-bf16)
  # sequence state (Gated DeltaNet conv windows and recurrent states) under continuous
  # batching: no prefix cache, prefills and decodes of many sequences in one step
  add_test(NAME server/batch-qwen3-next-q4
           COMMAND ${CELLM_NODE} ${srv}/batch.mjs $<TARGET_FILE:cellm_cli>
                   ${fx}/qwen3-next/mlx-q4-g32-bf16)
  add_test(NAME server/load
           COMMAND ${CELLM_NODE} ${srv}/load.mjs $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16)
  add_test(NAME server/openai
           COMMAND ${CELLM_NODE} ${srv}/openai.mjs $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  add_test(NAME server/tools
           COMMAND ${CELLM_NODE} ${srv}/tools.mjs $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  add_test(NAME server/structured
           COMMAND ${CELLM_NODE} ${srv}/structured.mjs $<TARGET_FILE:cellm_cli>
                   ${PROJECT_SOURCE_DIR}/models/wordnet-llama ${fx}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  add_test(NAME server/hygiene
           COMMAND ${CELLM_NODE} ${srv}/hygiene.mjs $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  add_test(NAME server/prefix
           COMMAND ${CELLM_NODE} ${srv}/prefix.mjs $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  # the prefix cache of models with sequence state: a chat's second turn resumes from the
  # first turn's state snapshot
  foreach(_st lfm2/f32 qwen3.5/bf16)
    string(REPLACE "/" "-" _stn ${_st})
    add_test(NAME server/prefix-state-${_stn}
             COMMAND ${CELLM_NODE} ${srv}/prefix_state.mjs $<TARGET_FILE:cellm_cli> ${fx}/${_st}
                     ${CMAKE_CURRENT_BINARY_DIR})
    set_tests_properties(server/prefix-state-${_stn}
                         PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS server)
  endforeach()
  set_tests_properties(server/prefix server/curl server/batch-llama3-bf16 server/batch-qwen3-moe-q4
                       server/batch-gemma3-q4 server/batch-qwen3-next-q4 server/load server/openai server/tools server/hygiene
                       server/structured
                       PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS server)
  # /v1/responses and /v1/messages through openai, the Vercel AI SDK (@ai-sdk/openai,
  # @ai-sdk/openai-compatible) and @anthropic-ai/sdk (all installed by 30-server.sh)
  add_test(NAME server/endpoints
           COMMAND ${CELLM_NODE} ${srv}/endpoints.mjs $<TARGET_FILE:cellm_cli>
                   ${PROJECT_SOURCE_DIR}/models/wordnet-llama ${fx}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(server/endpoints PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS server)
  # LangChain (bindTools, withStructuredOutput) and the AI SDK (generateText with tools,
  # generateObject) on a checkpoint with Qwen2.5's template
  add_test(NAME server/agents
           COMMAND ${CELLM_NODE} ${srv}/agents.mjs $<TARGET_FILE:cellm_cli> ${fx}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(server/agents PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS server)
endif()
