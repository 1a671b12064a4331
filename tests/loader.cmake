# Loader tests: 16-bit widening, affine dequantization, the safetensors container, config.json,
# checkpoint directories and their malformed variants, `cellm inspect` on every fixture, the
# fuzz targets of the parsers, and the dequantization benchmark (built, not run as a test).
cellm_core_test(test_half ${CMAKE_CURRENT_LIST_DIR}/test_half.c)
cellm_core_test(test_quant ${CMAKE_CURRENT_LIST_DIR}/test_quant.c)
cellm_core_test(test_gemm ${CMAKE_CURRENT_LIST_DIR}/test_gemm.c)
cellm_core_test(test_formats ${CMAKE_CURRENT_LIST_DIR}/test_formats.c)
cellm_core_test(test_formats_load ${CMAKE_CURRENT_LIST_DIR}/test_formats_load.c)
cellm_core_test(test_safetensors ${CMAKE_CURRENT_LIST_DIR}/test_safetensors.c)
cellm_core_test(test_config ${CMAKE_CURRENT_LIST_DIR}/test_config.c)
cellm_core_test(test_gpt_oss ${CMAKE_CURRENT_LIST_DIR}/test_gpt_oss.c)
# smollm3's NoPE layers, olmo2/olmo3's post-norm block and full-width q/k norms.
cellm_core_test(test_nope_postnorm ${CMAKE_CURRENT_LIST_DIR}/test_nope_postnorm.c)
cellm_core_test(test_router ${CMAKE_CURRENT_LIST_DIR}/test_router.c)
# Llama 4 text and Mistral 3 text: config defaults, query scales, key ranges, expert layouts.
cellm_core_test(test_llama4 ${CMAKE_CURRENT_LIST_DIR}/test_llama4.c)
cellm_core_test(test_mla ${CMAKE_CURRENT_LIST_DIR}/test_mla.c)
# Gemma 3n: config keys and refusals, the sparsity quantile and cut, the dividing norm.
cellm_core_test(test_gemma3n ${CMAKE_CURRENT_LIST_DIR}/test_gemma3n.c)
# YaRN and longrope: keys, frequencies, the per-forward longrope switch through the engine.
cellm_core_test(test_rope ${CMAKE_CURRENT_LIST_DIR}/test_rope.c)
target_compile_definitions(test_rope PRIVATE CELLM_CLI="$<TARGET_FILE:cellm_cli>")
add_dependencies(test_rope cellm_cli)
cellm_core_test(test_ckpt ${CMAKE_CURRENT_LIST_DIR}/test_ckpt.c)

# libFuzzer targets (CELLM_FUZZ=ON, clang). cellm_fuzz_target is defined after the
# fragments are included, so the calls are deferred to the end of the directory.
cmake_language(DEFER DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} CALL cellm_fuzz_target fuzz_safetensors
               ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_safetensors.c)
cmake_language(DEFER DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} CALL cellm_fuzz_target fuzz_config
               ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_config.c)
cmake_language(DEFER DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} CALL cellm_fuzz_target fuzz_index
               ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_index.c)

# `cellm inspect` on every fixture, checking the facts each directory's name and family
# imply.
add_test(NAME inspect COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_inspect.sh
         $<TARGET_FILE:cellm_cli> ${CELLM_FIXTURES})

# The README's family table is `cellm inspect --families` (one source of truth).
add_test(NAME families COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_families.sh
         $<TARGET_FILE:cellm_cli> ${PROJECT_SOURCE_DIR}/README.md)

# The granite family row, on Llama fixtures read with Llama's multipliers.
add_test(NAME granite_rows COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_granite_rows.sh
         $<TARGET_FILE:cellm_cli> ${CELLM_FIXTURES})

# The dequantization benchmark (bench/dequant.sh builds and runs it); an executable, not
# a test.
add_executable(dequant_bench ${PROJECT_SOURCE_DIR}/bench/dequant_bench.c)
target_include_directories(dequant_bench PRIVATE ${PROJECT_SOURCE_DIR}/src ${CJSON_INC})
target_link_libraries(dequant_bench PRIVATE cellm_core)
add_executable(matvec_bench ${PROJECT_SOURCE_DIR}/bench/matvec_bench.c)
target_include_directories(matvec_bench PRIVATE ${PROJECT_SOURCE_DIR}/src ${CJSON_INC})
target_link_libraries(matvec_bench PRIVATE cellm_core)

# The GEMM benchmark (bench/gemm_bench.c): an executable, not a test.
add_executable(gemm_bench ${PROJECT_SOURCE_DIR}/bench/gemm_bench.c)
target_include_directories(gemm_bench PRIVATE ${PROJECT_SOURCE_DIR}/src ${CJSON_INC})
target_link_libraries(gemm_bench PRIVATE cellm_core)

# `cellm inspect` on a checkpoint of each quantized format (docs/formats.md).
add_test(NAME inspect_formats COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_inspect_formats.sh
         $<TARGET_FILE:cellm_cli> $<TARGET_FILE:test_formats_load>)
# The quantized formats' kernels, decode and prefill (bench/formats_bench.c, bench/formats_cpu.md).
add_executable(formats_bench ${PROJECT_SOURCE_DIR}/bench/formats_bench.c)
target_include_directories(formats_bench PRIVATE ${PROJECT_SOURCE_DIR}/src ${CJSON_INC})
target_link_libraries(formats_bench PRIVATE cellm_core m)
