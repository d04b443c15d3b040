// The trivial /init of `make bench-guest`'s baseline boot: say so on the console, power off.
#include <fcntl.h>
#include <sys/reboot.h>
#include <unistd.h>

int main() {
  int fd = ::open("/dev/console", O_WRONLY);
  if (fd >= 0) (void)::write(fd, "fcvm-bare-init\n", 15);
  ::reboot(RB_POWER_OFF);
  return 0;
}
