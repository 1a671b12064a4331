# Tokenizer (src/tokenizer/): unit tests on small committed tokenizer.json
# files (always run), comparisons with the reference on real tokenizers fetched by
# .ci/setup.d/20-tokenizers.sh (skipped when absent, except in CI where CELLM_CI=1 makes
# them fail), and a libFuzzer target.
cellm_unit_test(test_tokenizer ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer.c)

add_executable(test_tok_hub ${CMAKE_CURRENT_LIST_DIR}/test_tok_hub.c)
target_include_directories(test_tok_hub PRIVATE ${PROJECT_SOURCE_DIR}/src ${CJSON_INC})
target_link_libraries(test_tok_hub PRIVATE cellm)
foreach(m llama3 llama3_1 llama3_2 qwen3 qwen2_5 gemma3 mistral_nemo)
  add_test(NAME tokenizer_hub_${m} COMMAND test_tok_hub ${CMAKE_CURRENT_LIST_DIR}/data/hub/${m})
  set_tests_properties(tokenizer_hub_${m} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
endforeach()

cmake_language(DEFER DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} CALL cellm_fuzz_target fuzz_tokenizer
               ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_tokenizer.c)
