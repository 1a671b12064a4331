# cmake --install into PREFIX, then compile and run a program against the installed header
# and libraries only.  cmake -DBUILD=... -DPREFIX=... -DCC=... -DCJSON=... [-DFLAGS=...]
# -P install.cmake (FLAGS: compiler flags the libraries need, e.g. the sanitizers')
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${PREFIX}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
include(GNUInstallDirs)
foreach(f ${CMAKE_INSTALL_BINDIR}/cellm ${CMAKE_INSTALL_INCLUDEDIR}/cellm.h
          ${CMAKE_INSTALL_LIBDIR}/libcellm_core.a ${CMAKE_INSTALL_LIBDIR}/libcellm_text.a)
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "not installed: ${PREFIX}/${f}")
  endif()
endforeach()
execute_process(COMMAND "${PREFIX}/${CMAKE_INSTALL_BINDIR}/cellm" --version
                OUTPUT_VARIABLE v RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT v MATCHES "^cellm [0-9]")
  message(FATAL_ERROR "installed cellm --version: ${rc} ${v}")
endif()
file(WRITE "${PREFIX}/use.c" "#include <cellm.h>
#include <stdio.h>
int main(void)
{
    struct cellm_model_params mp = cellm_model_params_default();
    struct cellm_error err;
    struct cellm_model *m;
    /* a missing directory is an error with a message, through the installed library */
    if (cellm_model_load(\"/nonexistent\", &mp, &m, &err) == CELLM_OK) return 1;
    printf(\"%s\\n\", cellm_status_str(CELLM_ERR_IO));
    return 0;
}
")
separate_arguments(flags UNIX_COMMAND "${FLAGS}")
execute_process(COMMAND ${CC} -std=c17 ${flags} -I${PREFIX}/${CMAKE_INSTALL_INCLUDEDIR} ${PREFIX}/use.c
                        -L${PREFIX}/${CMAKE_INSTALL_LIBDIR} -lcellm_text -lcellm_core ${CJSON}
                        -lm -lpthread -ldl -o ${PREFIX}/use
                RESULT_VARIABLE rc ERROR_VARIABLE e)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "a program using the installed library does not build: ${e}")
endif()
execute_process(COMMAND ${PREFIX}/use RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "a program using the installed library failed: ${rc} ${out}")
endif()
