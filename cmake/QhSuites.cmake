# Test binaries register themselves with qh_add_suite() (conformance/CMakeLists.txt); this writes their list to
# bin/qh_suites.json, which `qharness run` reads, so there is no second list of checks to keep in step.
get_property(_qh_suites GLOBAL PROPERTY QH_SUITES)
set(_qh_entries "")
foreach(_suite IN LISTS _qh_suites)
  if(_qh_entries)
    string(APPEND _qh_entries ",\n")
  endif()
  string(APPEND _qh_entries "  {\"name\": \"${_suite}\", \"path\": \"$<TARGET_FILE:${_suite}>\"}")
endforeach()
file(GENERATE OUTPUT ${CMAKE_RUNTIME_OUTPUT_DIRECTORY}/qh_suites.json CONTENT "[\n${_qh_entries}\n]\n")
