# FCVM_SANITIZE builds everything with ASan and UBSan; CI runs the unit tests in that build too.
if(FCVM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
