# vela_module(NAME SOURCES ... DEPS ...): one static library per src/ folder.
function(vela_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(vela_${name} STATIC ${ARG_SOURCES})
  target_include_directories(vela_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(vela_${name} PUBLIC ${ARG_DEPS})
endfunction()

# vela_test(NAME SOURCES ... DEPS ... [LABELS ...] [THREADS n]): one GoogleTest binary, registered
# with ctest. THREADS: the threads its tests keep busy (a model on a ThreadPool of 2), which ctest
# reserves as PROCESSORS. A test whose pool shares its cores with another test runs 3-6x slower
# (each op's split waits on a descheduled thread), so `ctest -j2` on 2 cores runs such tests alone.
function(vela_test name)
  cmake_parse_arguments(ARG "" "THREADS" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS ${name})
  endif()
  if(NOT ARG_THREADS)
    set(ARG_THREADS 1)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE VELA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}"
                       PROCESSORS ${ARG_THREADS}
                       ENVIRONMENT "VELA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
