# `make install [PREFIX=/usr/local] [DESTDIR=]`: the layout fcvm runs from once installed.
#   bin/fcvm, bin/fuse-pipe              symlinks into libexec/fcvm/ (what users type)
#   libexec/fcvm/                        every fcvm binary, side by side: each finds the others
#                                        beside its own executable (base/install_layout.h), as in
#                                        the build tree's bin/
#   lib/systemd/system/                  fcvm-supervisor.socket and .service (root's supervisor)
#   share/doc/fcvm/README.md
# The units name the install-time prefix, so they are written at install time, not configure time.
include(GNUInstallDirs)

set(FCVM_INSTALLED_BINARIES fcvm fcvm-supervisor fcvm-worker fcvm-netd fcvm-uffd-server fc-agent)
if(TARGET fuse-pipe)
  list(APPEND FCVM_INSTALLED_BINARIES fuse-pipe)
endif()
install(TARGETS ${FCVM_INSTALLED_BINARIES} RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/fcvm)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(FCVM_UNIT_SOURCES ${PROJECT_SOURCE_DIR}/supervisor/systemd)
install(CODE "
  set(root \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
  file(MAKE_DIRECTORY \"\${root}/${CMAKE_INSTALL_BINDIR}\")
  foreach(name fcvm fuse-pipe)
    if(EXISTS \"\${root}/${CMAKE_INSTALL_LIBEXECDIR}/fcvm/\${name}\")
      file(CREATE_LINK ../${CMAKE_INSTALL_LIBEXECDIR}/fcvm/\${name}
           \"\${root}/${CMAKE_INSTALL_BINDIR}/\${name}\" SYMBOLIC)
      message(STATUS \"Installing: \${root}/${CMAKE_INSTALL_BINDIR}/\${name} (symlink)\")
    endif()
  endforeach()
  set(FCVM_LIBEXEC_DIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBEXECDIR}/fcvm\")
  set(FCVM_DOC_DIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
  foreach(unit fcvm-supervisor.socket fcvm-supervisor.service)
    configure_file(${FCVM_UNIT_SOURCES}/\${unit}.in
                   \"\${root}/lib/systemd/system/\${unit}\" @ONLY)
    message(STATUS \"Installing: \${root}/lib/systemd/system/\${unit}\")
  endforeach()
")
