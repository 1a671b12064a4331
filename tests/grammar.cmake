cellm_unit_test(test_grammar ${CMAKE_CURRENT_LIST_DIR}/test_grammar.c)
# libFuzzer target (CELLM_FUZZ=ON, clang); cellm_fuzz_target is defined after the fragments
# are included, so the call is deferred.
cmake_language(DEFER DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} CALL cellm_fuzz_target fuzz_grammar
               ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_grammar.c)
# The constrained-decoding benchmark (bench/grammar_notes.md): an executable, not a test.
add_executable(grammar_bench ${PROJECT_SOURCE_DIR}/bench/grammar_bench.c)
target_link_libraries(grammar_bench PRIVATE cellm)
