// `fcvm doctor`: what this host can do for fcvm, each answer with its reason.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/paths.h"
#include "worker/accelerator.h"

namespace fcvm::cli {

struct HostCheck {
  std::string name;
  bool ok = false;
  bool required = false;  // fcvm cannot run VMs without it
  std::string detail;
};

struct DoctorReport {
  worker::AcceleratorChoice accelerator;
  std::vector<HostCheck> checks;

  bool healthy() const;  // every required check passed
};

DoctorReport runDoctor(const Paths& paths);
nlohmann::json toJson(const DoctorReport& report);
std::string formatReport(const DoctorReport& report);

}  // namespace fcvm::cli
