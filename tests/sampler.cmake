cellm_unit_test(test_sampler ${CMAKE_CURRENT_LIST_DIR}/test_sampler.c)
