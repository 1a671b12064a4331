cellm_unit_test(test_grammar ${CMAKE_CURRENT_LIST_DIR}/test_grammar.c)
