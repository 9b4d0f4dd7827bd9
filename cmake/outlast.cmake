# Small helpers so that each layer's CMakeLists.txt states only what is particular to it.

set(OUTLAST_WARNINGS -Wall -Wextra -Wpedantic -Wno-deprecated-declarations)

# outlast_add_library(NAME SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# One layer = one folder = one static library `outlast_<NAME>`, alias `outlast::<NAME>`.
function(outlast_add_library name)
  cmake_parse_arguments(arg "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(outlast_${name} STATIC ${arg_SOURCES})
  add_library(outlast::${name} ALIAS outlast_${name})
  target_include_directories(outlast_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(outlast_${name} PRIVATE ${OUTLAST_WARNINGS})
  target_link_libraries(outlast_${name} PUBLIC ${arg_PUBLIC_DEPS} PRIVATE ${arg_PRIVATE_DEPS})
endfunction()

# outlast_add_test(NAME SOURCES ... DEPS ... LABELS ... [TIMEOUT seconds])
# One Catch2 binary registered as one CTest test with labels and a time bound.
function(outlast_add_test name)
  cmake_parse_arguments(arg "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 120)
  endif()
  add_executable(${name} ${arg_SOURCES})
  target_compile_options(${name} PRIVATE ${OUTLAST_WARNINGS})
  target_link_libraries(${name} PRIVATE outlast_test_main ${arg_DEPS})
  if(BUILD_TESTING)
    add_test(NAME ${name} COMMAND ${name} --reporter console)
    set_tests_properties(${name} PROPERTIES LABELS "${arg_LABELS}" TIMEOUT ${arg_TIMEOUT})
  endif()
endfunction()
