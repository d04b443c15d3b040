// fcvm: the thin command-line client of fcvm-supervisor.
#include <signal.h>
#include <unistd.h>

#include <iostream>

#include "cli/fcvm_cli.h"

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv, argv + argc);
  return fcvm::cli::runCli(args, {std::cout, std::cerr, fcvm::processEnvironment(), ::geteuid()});
}
