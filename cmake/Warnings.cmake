# One warning policy for every target of the project.
add_compile_options(-Wall -Wextra -Werror -Wno-unused-parameter)
# GCC 12 at -O2 reports kj::Promise<T> of any T with non-trivial members as "maybe uninitialized"
# inside kj's ExceptionOr (a known false positive of that warning with inlined unions); clang and
# clang-tidy keep checking for uninitialized use.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  add_compile_options(-Wno-maybe-uninitialized)
endif()
