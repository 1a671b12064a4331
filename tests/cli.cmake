# The command line (tests/cli): option parsing and prompts (options.sh), models by name
# against a local fake hub (pull.sh), `cellm chat` through a pseudo-terminal (chat_pty.py)
# and on a sliding-window model (chat_window.py), Ctrl-C in generate (generate_sigint.py).
# All on the shipped model (and a fixture); none touches the network.
find_program(CELLM_PYTHON3 python3)
if(EXISTS ${PROJECT_SOURCE_DIR}/models/wordnet-llama/tokenizer.json)
  set(_m ${PROJECT_SOURCE_DIR}/models/wordnet-llama)
  add_test(NAME cli/options
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/options.sh $<TARGET_FILE:cellm_cli> ${_m}
                   ${CMAKE_CURRENT_BINARY_DIR}/cli-options)
  set_tests_properties(cli/options PROPERTIES TIMEOUT 600 LABELS cli)
  if(CELLM_PYTHON3)
    add_test(NAME cli/chat-pty
             COMMAND ${CELLM_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli/chat_pty.py
                     $<TARGET_FILE:cellm_cli> ${_m} ${CMAKE_CURRENT_BINARY_DIR})
    set_tests_properties(cli/chat-pty PROPERTIES TIMEOUT 600 LABELS cli)
    # a sliding-window model (the gemma3 fixture with the shipped model's tokenizer, cut
    # to its vocabulary) keeps its history in the prefix cache, replies unchanged
    add_test(NAME cli/chat-window
             COMMAND ${CELLM_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli/chat_window.py
                     $<TARGET_FILE:cellm_cli> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/gemma3/bf16
                     ${_m} ${CMAKE_CURRENT_BINARY_DIR}/cli-chat-window)
    set_tests_properties(cli/chat-window PROPERTIES TIMEOUT 600 LABELS cli)
    # Ctrl-C in generate: a newline, the stats, status 130 (a pty, and a signal with --ids)
    add_test(NAME cli/generate-sigint
             COMMAND ${CELLM_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli/generate_sigint.py
                     $<TARGET_FILE:cellm_cli> ${_m})
    set_tests_properties(cli/generate-sigint PROPERTIES TIMEOUT 600 LABELS cli)
    if(CURL_FOUND AND OpenSSL_FOUND)
      add_test(NAME cli/pull
               COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/pull.sh $<TARGET_FILE:cellm_cli> ${_m}
                       ${CMAKE_CURRENT_BINARY_DIR}/cli-pull)
      set_tests_properties(cli/pull PROPERTIES TIMEOUT 600 LABELS cli)
    endif()
  endif()
endif()

# cmake --install puts the program, the library and its header in a prefix, and a
# program built against the installed files links and runs (with the sanitizers' runtime
# when the libraries were built with them).
set(_install_flags "")
if(CELLM_SANITIZE)
  set(_install_flags "-fsanitize=address,undefined")
endif()
add_test(NAME cli/install
         COMMAND ${CMAKE_COMMAND} -DBUILD=${PROJECT_BINARY_DIR}
                 -DPREFIX=${CMAKE_CURRENT_BINARY_DIR}/install-prefix
                 -DCC=${CMAKE_C_COMPILER} -DCJSON=${CJSON_LIB} "-DFLAGS=${_install_flags}"
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/install.cmake)
set_tests_properties(cli/install PROPERTIES LABELS cli)
