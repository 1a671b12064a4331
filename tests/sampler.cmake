cellm_core_test(test_sampler ${CMAKE_CURRENT_LIST_DIR}/test_sampler.c)
