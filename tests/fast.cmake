# Fast-mode kernels (--precision fast) against a scalar model of their quantization, on
# every fast ISA level the CPU has.
cellm_core_test(test_fast ${CMAKE_CURRENT_SOURCE_DIR}/test_fast.c)
# The memory bounds of test_memory (weights mapped, never copied; peak RSS about the file
# plus the KV cache) in fast mode.
add_test(NAME test_memory_fast COMMAND test_memory fast)
# Executors without a fast mode refuse it by name instead of running exact.
add_test(NAME fast-refused-by-xla
         COMMAND $<TARGET_FILE:cellm_cli> verify -m ${CELLM_FIXTURES}/qwen2/bf16 --device xla
                 --precision fast)
set_tests_properties(fast-refused-by-xla PROPERTIES
                     PASS_REGULAR_EXPRESSION "precision fast: the xla executor does not implement it")
