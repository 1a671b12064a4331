# The attack suite of issue 23: hostile inputs to the library (test_attack.c: strict JSON,
# regex budgets and nesting, recursion on a small stack, bounded tokenization, special
# files, malicious checkpoints) and to `cellm serve` (server/attack.mjs: idle and slow
# connections, concurrent large prompts under an RSS ceiling, request smuggling, signals
# under load, pathological regexes, malformed JSON, footguns). Loopback only; each case
# takes seconds. Both run in the ASan build of .ci/run as well, and server/attack in its
# ThreadSanitizer build (CELLM_TSAN).
cellm_unit_test(test_attack ${CMAKE_CURRENT_LIST_DIR}/test_attack.c)
set_tests_properties(test_attack PROPERTIES TIMEOUT 300 LABELS attack)

find_program(CELLM_ATTACK_NODE node)
find_program(CELLM_ATTACK_BASH bash)
if(MHD_LIB AND CELLM_ATTACK_NODE AND CELLM_ATTACK_BASH)
  # the idle case holds 2,200 client sockets: raise the soft descriptor limit to the hard
  # one first (the case skips itself, saying so, when that is still too low)
  # Under a sanitizer the bounds that measure the sanitizer rather than the server scale:
  # ASan's shadow memory and quarantine are not the server's own, and its instrumented
  # server runs the /health probes 2-3x slower; ThreadSanitizer's (the CI pass that looks
  # for races, not speed) runs the regex ~20x slower and uses 5-10x the memory.
  set(time_scale 1)
  set(idle_scale 1)
  if(CELLM_SANITIZE)
    set(rss_mb 3072)
    set(idle_scale 2)
  elseif(CELLM_TSAN)
    set(rss_mb 8192)
    set(time_scale 30)
    set(idle_scale 5)
  else()
    set(rss_mb 1024)
  endif()
  add_test(NAME server/attack
           COMMAND ${CELLM_ATTACK_BASH} -c "ulimit -n $(ulimit -Hn) 2>/dev/null; exec \"$0\" \"$@\""
                   ${CELLM_ATTACK_NODE} ${CMAKE_CURRENT_LIST_DIR}/server/attack.mjs
                   $<TARGET_FILE:cellm_cli> ${CELLM_FIXTURES}/llama3-untied/bf16
                   ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(server/attack PROPERTIES TIMEOUT 900 LABELS "server;attack"
                       ENVIRONMENT "CELLM_ATTACK_RSS_MB=${rss_mb};CELLM_ATTACK_TIME_SCALE=${time_scale};CELLM_ATTACK_IDLE_SCALE=${idle_scale}")
endif()
