// safetensors tensors as at::Tensor: CPU views into the file's mapping (the mapping lives as long as any view),
// copies on another device, or `meta` tensors that read no data. The byte-level work is impl/format's.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "impl/format/safetensors.h"

namespace qh::checkpoint {

// The ATen dtype of a safetensors dtype. F4, F6_E2M3, F6_E3M2 and F8_E8M0 have no element-for-element ATen
// equivalent that torch's own safetensors loader accepts: they stay readable as raw bytes through impl/format,
// and asking for them as at::Tensor throws FormatError naming the file and the tensor.
c10::ScalarType scalar_type_of(const format::TensorInfo& info, const std::string& file);
// The safetensors dtype of an ATen dtype; throws ConfigError for one safetensors cannot store.
format::Dtype dtype_of(c10::ScalarType type, const std::string& tensor);

// The tensor `info` of `file` on `device`:
//  - CPU: a view into the mapping when its address is aligned for the dtype (writes stay private to this process),
//    else an aligned copy;
//  - meta: an empty tensor of the right shape and dtype; no byte of data is read;
//  - other devices (cuda): a copy, transferred straight from the mapping.
at::Tensor load_tensor(const std::shared_ptr<const format::SafetensorsFile>& file, const format::TensorInfo& info,
                       c10::Device device);
at::Tensor load_tensor(const std::shared_ptr<const format::SafetensorsFile>& file, const std::string& name,
                       c10::Device device);

// Every tensor of the file on `device`, by name.
std::map<std::string, at::Tensor> load_all(const std::string& path, c10::Device device);

// Writes tensors from any device (copied to contiguous CPU memory first) atomically, in the reference layout.
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace qh::checkpoint
