# Chat-template interpreter (src/template/jinja*.c): unit tests, differential tests
# against Python jinja2 (tests/chat/), and a libFuzzer target.
cellm_unit_test(test_jinja ${CMAKE_CURRENT_LIST_DIR}/test_jinja.c)
# Tool-call and reasoning parsing (src/template/toolcall.c) on canned outputs.
cellm_unit_test(test_toolcall ${CMAKE_CURRENT_LIST_DIR}/test_toolcall.c)
target_compile_definitions(test_toolcall PRIVATE CELLM_HUB_DIR="${CMAKE_CURRENT_LIST_DIR}/data/hub"
                           CELLM_TEMPLATE_DIR="${CMAKE_CURRENT_LIST_DIR}/chat/templates")

add_executable(test_jinja_render ${CMAKE_CURRENT_LIST_DIR}/test_jinja_render.c)
target_include_directories(test_jinja_render PRIVATE ${PROJECT_SOURCE_DIR}/src ${CJSON_INC})
target_link_libraries(test_jinja_render PRIVATE cellm)

find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  # Small templates, one per feature, compared byte for byte with jinja2 (always run).
  add_test(NAME chat_template_features
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/chat/compare.py features
                   ${CMAKE_CURRENT_LIST_DIR}/chat/features.json $<TARGET_FILE:test_jinja_render>)
  # The real templates from tests/data/hub (fetched by .ci/setup.d/20-tokenizers.sh):
  # skipped when absent, except in CI (CELLM_CI=1) where that fails.
  add_test(NAME chat_template_hub
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/chat/compare.py hub
                   ${CMAKE_CURRENT_LIST_DIR}/data/hub
                   ${CMAKE_CURRENT_LIST_DIR}/chat/conversations.json
                   $<TARGET_FILE:test_jinja_render>)
  # The real templates committed in tests/chat/templates (gpt-oss, Qwen3-Coder, Mistral
  # Small 3.2, Devstral, GLM-4.5/4.6, DeepSeek-V3.1, Kimi K2, LFM2.5, Granite 3.3, Gemma 4;
  # sources in SOURCES.md there) against every conversation.
  add_test(NAME chat_template_real
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/chat/compare.py templates
                   ${CMAKE_CURRENT_LIST_DIR}/chat/templates
                   ${CMAKE_CURRENT_LIST_DIR}/chat/conversations.json
                   $<TARGET_FILE:test_jinja_render>)
  set_tests_properties(chat_template_features chat_template_hub chat_template_real
                       PROPERTIES SKIP_RETURN_CODE 77)
endif()

# cellm_fuzz_target is defined after the fragments are included: call it once the
# directory has been processed.
cmake_language(DEFER DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} CALL cellm_fuzz_target fuzz_jinja
               ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_jinja.c)
cmake_language(DEFER DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} CALL cellm_fuzz_target fuzz_toolcall
               ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_toolcall.c)
