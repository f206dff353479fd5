// The qh::Module tree: what a PyTorch nn.Module hierarchy is to the tools we check, reduced to what loading and
// checking checkpoints needs. Every module has a kind ("Linear", "QuantLinear", ...), named parameters and buffers
// (at::Tensor, possibly on `meta`) and named children; qualified names ("model.layers.0.self_attn.q_proj.weight")
// come from the path, as in a state_dict.
//
// Tensors live in shared slots: tying two names (lm_head.weight <- model.embed_tokens.weight) makes both names
// point at one slot, so loading either sets both, as a tied nn.Parameter does.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace qh::model {

struct TensorSlot {
  at::Tensor value;
  bool parameter = true;  // a learned parameter, or a buffer (packed weights, indices)
};

class Module {
 public:
  explicit Module(std::string kind) : kind_(std::move(kind)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& kind() const { return kind_; }

  void register_parameter(const std::string& name, at::Tensor value);
  void register_buffer(const std::string& name, at::Tensor value);
  // Points `name` at another module's slot (tying); registers the name when it is new.
  void share_slot(const std::string& name, std::shared_ptr<TensorSlot> slot);
  Module& register_module(const std::string& name, std::unique_ptr<Module> child);
  // Swaps child `name` (which must exist) for `child`; returns the old one.
  std::unique_ptr<Module> replace_child(const std::string& name, std::unique_ptr<Module> child);

  // Local lookups; nullptr when absent.
  std::shared_ptr<TensorSlot> slot(const std::string& name) const;
  Module* child(const std::string& name) const;
  // The value of parameter or buffer `name`; throws ConfigError when this module has none of that name (the
  // message accelerate gives: "<Kind>() does not have a parameter or a buffer named <name>").
  const at::Tensor& tensor(const std::string& name) const;

  const std::vector<std::pair<std::string, std::shared_ptr<TensorSlot>>>& tensors() const { return tensors_; }
  const std::vector<std::pair<std::string, std::unique_ptr<Module>>>& children() const { return children_; }

  // y = module(x). Kinds without a forward (containers) throw ConfigError.
  virtual at::Tensor forward(const at::Tensor& x) const;

 private:
  void add_slot(const std::string& name, std::shared_ptr<TensorSlot> slot);

  std::string kind_;
  std::vector<std::pair<std::string, std::shared_ptr<TensorSlot>>> tensors_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
};

// One parameter or buffer of a tree, by qualified name.
struct NamedTensor {
  std::string name;  // qualified
  std::string module;  // qualified name of the owning module ("" for the root)
  std::string local;   // name inside the owning module
  const Module* owner = nullptr;
  std::shared_ptr<TensorSlot> slot;
};

// Every parameter and buffer, depth first in registration order (a state_dict's order). Tied names appear once
// each, all pointing at the shared slot.
std::vector<NamedTensor> named_tensors(const Module& root);
// Every module with its qualified name, the root first as "".
std::vector<std::pair<std::string, const Module*>> named_modules(const Module& root);
// The module at a qualified path ("" = root); nullptr when there is none.
Module* find_module(Module& root, const std::string& qualified);
// Swaps the module at a non-empty qualified path; returns the old one. Throws ConfigError when absent.
std::unique_ptr<Module> replace_module(Module& root, const std::string& qualified, std::unique_ptr<Module> module);

// The one way qharness copies into an existing tensor: refuses a `meta` destination, where torch's copy_ returns
// without copying anything (the AutoGPTQ Marlin bias bug, #551), and a shape mismatch. `name` is for messages.
void copy_into(at::Tensor& destination, const at::Tensor& source, const std::string& name);

// "a.b.c" -> {"a.b", "c"}; "c" -> {"", "c"}.
std::pair<std::string, std::string> split_last(const std::string& qualified);
std::string join_name(const std::string& prefix, const std::string& name);

}  // namespace qh::model
