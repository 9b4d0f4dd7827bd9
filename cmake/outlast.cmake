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

# outlast_add_test(NAME SOURCES ... DEPS ... LABELS ... [TIMEOUT seconds] [SPLIT tag])
# One Catch2 binary registered as one CTest test with labels and a time bound. With SPLIT, as two
# that CTest can run side by side: NAME_1 runs the test cases with the Catch2 tag (say `slow`),
# NAME_2 the others, hidden ones ([.]) in neither; both print each test case's duration. Catch2 2
# joins its arguments with a space, which means "and": NAME_1 gets `[slow] ~[.]`.
function(outlast_add_test name)
  cmake_parse_arguments(arg "" "TIMEOUT;SPLIT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 120)
  endif()
  add_executable(${name} ${arg_SOURCES})
  target_compile_options(${name} PRIVATE ${OUTLAST_WARNINGS})
  target_link_libraries(${name} PRIVATE outlast_test_main ${arg_DEPS})
  if(NOT BUILD_TESTING)
    return()
  endif()
  if(NOT arg_SPLIT)
    add_test(NAME ${name} COMMAND ${name} --reporter console)
    set_tests_properties(${name} PROPERTIES LABELS "${arg_LABELS}" TIMEOUT ${arg_TIMEOUT})
    return()
  endif()
  add_test(NAME ${name}_1 COMMAND ${name} --reporter console --durations yes "[${arg_SPLIT}]" "~[.]")
  add_test(NAME ${name}_2 COMMAND ${name} --reporter console --durations yes "~[${arg_SPLIT}]" "~[.]")
  set_tests_properties(${name}_1 ${name}_2 PROPERTIES LABELS "${arg_LABELS}" TIMEOUT ${arg_TIMEOUT})
endfunction()
