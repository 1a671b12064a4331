# OpenXLA executor: structural tests of the StableHLO emitter on every fixture family
# (no PJRT plugin needed), and the message of `--device xla` without a plugin. The runs
# on a GPU are tests/gpu/xla_run.sh.
cellm_core_test(test_xla_emit ${CMAKE_CURRENT_LIST_DIR}/test_xla_emit.c)
add_test(NAME xla/no_plugin_cli
         COMMAND $<TARGET_FILE:cellm_cli> verify -m ${CELLM_FIXTURES}/llama-tied/bf16
                 --device xla --pjrt-plugin /nonexistent/xla_cuda_plugin.so)
set_tests_properties(xla/no_plugin_cli PROPERTIES
                     PASS_REGULAR_EXPRESSION "--pjrt-plugin PATH or CELLM_PJRT_PLUGIN")

# cellm_xla_bench: load, prefill and decode timings on any device (no tokenizer needed);
# used by tests/gpu/xla_run.sh beside `cellm bench`.
add_executable(cellm_xla_bench ${CMAKE_CURRENT_LIST_DIR}/test_xla_bench.c)
target_include_directories(cellm_xla_bench PRIVATE ${PROJECT_SOURCE_DIR}/src ${CJSON_INC})
target_link_libraries(cellm_xla_bench PRIVATE cellm_core)

# In-graph dequantization of mxfp4/mxfp8/nvfp4/FP8 blocks/GPTQ/AWQ, run by a StableHLO
# interpreter (tests/hlo_interp.h) against cellm_weight_row, and whole one-layer models in
# each format (written by test_formats_load --write) planned and emitted.
cellm_core_test(test_xla_dequant ${CMAKE_CURRENT_LIST_DIR}/test_xla_dequant.c)
set(CELLM_XLA_FORMATS_DIR ${CMAKE_CURRENT_BINARY_DIR}/xla-formats)
add_test(NAME xla/formats_write
         COMMAND sh -c "rm -rf '${CELLM_XLA_FORMATS_DIR}' && mkdir -p '${CELLM_XLA_FORMATS_DIR}' && \"$0\" --write '${CELLM_XLA_FORMATS_DIR}'"
                 $<TARGET_FILE:test_formats_load>)
set_tests_properties(xla/formats_write PROPERTIES FIXTURES_SETUP xla_formats)
set_tests_properties(test_xla_dequant PROPERTIES FIXTURES_REQUIRED xla_formats
                     ENVIRONMENT "CELLM_XLA_FORMATS_DIR=${CELLM_XLA_FORMATS_DIR}")

# gpt-oss's pieces in the graph (sinks, router, expert biases, clamped SwiGLU, gate_up
# interleaved): the fixtures' prefill modules run by tests/hlo_interp.h against the CPU
# executor's logits.
cellm_core_test(test_xla_oss ${CMAKE_CURRENT_LIST_DIR}/test_xla_oss.c
                ${CMAKE_CURRENT_LIST_DIR}/xla_harness.c)

# Models with per-sequence state (LFM2, Qwen3.5, Qwen3-Next, Qwen3.5-MoE) and latent attention
# (DeepSeek-V3): prefill and decode modules run by
# tests/hlo_interp.h, the state carried between calls, against the CPU executor's logits.
cellm_core_test(test_xla_state ${CMAKE_CURRENT_LIST_DIR}/test_xla_state.c
                ${CMAKE_CURRENT_LIST_DIR}/xla_harness.c)

# The families of 2025-26 (smollm3, glm4_moe, ministral3, llama4, gemma4 dense and MoE,
# gemma3n):
# every fixture variant's prefill and decode modules run by tests/hlo_interp.h against the CPU executor's logits.
cellm_core_test(test_xla_families ${CMAKE_CURRENT_LIST_DIR}/test_xla_families.c
                ${CMAKE_CURRENT_LIST_DIR}/xla_harness.c)
