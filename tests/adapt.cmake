# The /v1/responses and /v1/messages adapters (src/server/api_adapt.c, api_responses.c,
# api_messages.c) on canned JSON: requests into chat requests, chat results and streams
# into the other APIs' objects and events. Linked with the chat path they call (api.c,
# api_out.c, sched.c), as the fuzz target is.
set(srvdir ${PROJECT_SOURCE_DIR}/src/server)
cellm_unit_test(test_adapt ${CMAKE_CURRENT_SOURCE_DIR}/test_adapt.c ${srvdir}/api_adapt.c
                ${srvdir}/api_responses.c ${srvdir}/api_messages.c ${srvdir}/api.c
                ${srvdir}/api_out.c ${srvdir}/sched.c)
