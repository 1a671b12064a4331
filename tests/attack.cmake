# The attack suite of issue 23: hostile inputs to the library (test_attack.c: strict JSON,
# regex budgets and nesting, recursion on a small stack, bounded tokenization, special
# files, malicious checkpoints) and to `cellm serve` (server/attack.mjs: idle and slow
# connections, concurrent large prompts under an RSS ceiling, request smuggling, signals
# under load, pathological regexes, malformed JSON, footguns). Loopback only; each case
# takes seconds. Both run in the ASan build of .ci/run as well.
cellm_unit_test(test_attack ${CMAKE_CURRENT_LIST_DIR}/test_attack.c)
set_tests_properties(test_attack PROPERTIES TIMEOUT 300 LABELS attack)
