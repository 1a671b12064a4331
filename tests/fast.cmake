# Fast-mode kernels (--precision fast) against a scalar model of their quantization, on
# every fast ISA level the CPU has.
cellm_core_test(test_fast ${CMAKE_CURRENT_SOURCE_DIR}/test_fast.c)
