// The HTTP health check: one GET from the host through the VM's network (a published port), whose
// status line says healthy (2xx, 3xx) or not. Bounded in time and in what it reads: the guest
// answers it.
#pragma once

#include <kj/async-io.h>

#include "ipc/vm_spec.h"

namespace fcvm::worker {

// Resolves true for a 2xx or 3xx answer, false for any other answer, a refused or broken
// connection, or no answer within `timeout`. Never rejects.
kj::Promise<bool> httpProbe(kj::AsyncIoContext& io, const ipc::HttpCheck& check,
                            kj::Duration timeout);

// The status code of an HTTP status line ("HTTP/1.1 200 OK"), or 0 if it is not one.
int httpStatus(std::string_view statusLine);

}  // namespace fcvm::worker
