# What every libFuzzer target of fcvm has in common (scripts/fuzz-targets). Each component's
# fuzz/CMakeLists.txt is a project of its own, built with clang by scripts/run-fuzz because the
# project's build uses g++; it includes this file and names its target's sources:
#
#   fcvm_fuzz_target(NAME SOURCES <files> [SCHEMAS <ipc/*.capnp>] [LIBRARIES <targets>])
#
# SOURCES are relative to the repository; SCHEMAS are compiled with capnp into the build tree.
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "the fuzzer needs clang (-fsanitize=fuzzer); configure with CXX=clang++")
endif()
set(FCVM_REPO ${CMAKE_CURRENT_LIST_DIR}/..)

function(fcvm_fuzz_target name)
  cmake_parse_arguments(FUZZ "" "" "SOURCES;SCHEMAS;LIBRARIES" ${ARGN})
  list(TRANSFORM FUZZ_SOURCES PREPEND ${FCVM_REPO}/)
  set(schema_sources)
  if(FUZZ_SCHEMAS)  # the caller has found CapnProto
    list(TRANSFORM FUZZ_SCHEMAS PREPEND ${FCVM_REPO}/)
    set(CAPNPC_SRC_PREFIX ${FCVM_REPO})
    set(CAPNPC_OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
    capnp_generate_cpp(schema_sources schema_headers ${FUZZ_SCHEMAS})
  endif()
  add_executable(${name} ${FUZZ_SOURCES} ${schema_sources})
  target_include_directories(${name} PRIVATE ${FCVM_REPO} ${CMAKE_CURRENT_BINARY_DIR})
  set(sanitizers -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
  target_compile_options(${name} PRIVATE ${sanitizers} -g -O1 -Wall -Wextra -Werror
    -Wno-unused-parameter)
  target_link_options(${name} PRIVATE ${sanitizers})
  target_link_libraries(${name} PRIVATE ${FUZZ_LIBRARIES})
endfunction()
