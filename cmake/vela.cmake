# vela_module(NAME SOURCES ... DEPS ...): one static library per src/ folder.
function(vela_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(vela_${name} STATIC ${ARG_SOURCES})
  target_include_directories(vela_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(vela_${name} PUBLIC ${ARG_DEPS})
endfunction()

# vela_test(NAME SOURCES ... DEPS ... [LABELS ...]): one GoogleTest binary, registered with ctest.
function(vela_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS ${name})
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE VELA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}"
                       ENVIRONMENT "VELA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
