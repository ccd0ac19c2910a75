# Build check: the restorer blob must be self-contained (no undefined symbols, no relocations).
execute_process(COMMAND ${NM} -u ${BLOB} OUTPUT_VARIABLE undefined)
if(NOT undefined STREQUAL "")
  message(FATAL_ERROR "restorer blob has undefined symbols:\n${undefined}")
endif()
execute_process(COMMAND ${READELF} -r ${BLOB} OUTPUT_VARIABLE relocs)
if(relocs MATCHES "R_X86_64")
  message(FATAL_ERROR "restorer blob needs relocations:\n${relocs}")
endif()
