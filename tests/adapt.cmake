# The /v1/responses and /v1/messages adapters (src/server/api_adapt.c, api_responses.c,
# api_messages.c) on canned JSON: requests into chat requests, chat results and streams
# into the other APIs' objects and events. Linked with the chat path they call (every
# src/server/api*.c, and sched.c for the request's lifetime), as the fuzz target is; the
# glob keeps the link whole when the chat path gains a file.
file(GLOB CELLM_ADAPT_API CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/server/api*.c)
cellm_unit_test(test_adapt ${CMAKE_CURRENT_SOURCE_DIR}/test_adapt.c ${CELLM_ADAPT_API}
                ${PROJECT_SOURCE_DIR}/src/server/sched.c)
