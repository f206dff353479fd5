#include "impl/model/module.h"

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"

namespace qh::model {

void Module::add_slot(const std::string& name, std::shared_ptr<TensorSlot> slot) {
  for (auto& [n, s] : tensors_) {
    if (n == name) {
      s = std::move(slot);
      return;
    }
  }
  tensors_.emplace_back(name, std::move(slot));
}

void Module::register_parameter(const std::string& name, at::Tensor value) {
  add_slot(name, std::make_shared<TensorSlot>(TensorSlot{std::move(value), true}));
}

void Module::register_buffer(const std::string& name, at::Tensor value) {
  add_slot(name, std::make_shared<TensorSlot>(TensorSlot{std::move(value), false}));
}

void Module::share_slot(const std::string& name, std::shared_ptr<TensorSlot> slot) { add_slot(name, std::move(slot)); }

Module& Module::register_module(const std::string& name, std::unique_ptr<Module> child) {
  if (this->child(name) != nullptr) {
    throw ConfigError(Where{.layer = name}, "a module name is registered once per parent", "a new name",
                      "'" + name + "' already registered in " + kind_);
  }
  children_.emplace_back(name, std::move(child));
  return *children_.back().second;
}

std::unique_ptr<Module> Module::replace_child(const std::string& name, std::unique_ptr<Module> child) {
  for (auto& [n, c] : children_) {
    if (n == name) {
      std::swap(c, child);
      return child;
    }
  }
  throw ConfigError(Where{.layer = name}, "only an existing child can be replaced", "a child of " + kind_,
                    "no child named '" + name + "'");
}

std::shared_ptr<TensorSlot> Module::slot(const std::string& name) const {
  for (const auto& [n, s] : tensors_) {
    if (n == name) return s;
  }
  return nullptr;
}

Module* Module::child(const std::string& name) const {
  for (const auto& [n, c] : children_) {
    if (n == name) return c.get();
  }
  return nullptr;
}

const at::Tensor& Module::tensor(const std::string& name) const {
  const auto s = slot(name);
  if (s == nullptr) {
    throw ConfigError(Where{.tensor = name}, kind_ + "() does not have a parameter or a buffer named " + name,
                      "a tensor the module registered", "none");
  }
  return s->value;
}

at::Tensor Module::forward(const at::Tensor&) const {
  throw ConfigError(Where{}, "only layers have a forward", "a layer (Linear, QuantLinear, Embedding, ...)",
                    "a " + kind_ + " container");
}

namespace {

void collect(const Module& m, const std::string& prefix, std::vector<NamedTensor>& out) {
  for (const auto& [name, slot] : m.tensors()) out.push_back({join_name(prefix, name), prefix, name, &m, slot});
  for (const auto& [name, child] : m.children()) collect(*child, join_name(prefix, name), out);
}

void collect_modules(const Module& m, const std::string& prefix, std::vector<std::pair<std::string, const Module*>>& out) {
  out.emplace_back(prefix, &m);
  for (const auto& [name, child] : m.children()) collect_modules(*child, join_name(prefix, name), out);
}

}  // namespace

std::vector<NamedTensor> named_tensors(const Module& root) {
  std::vector<NamedTensor> out;
  collect(root, "", out);
  return out;
}

std::vector<std::pair<std::string, const Module*>> named_modules(const Module& root) {
  std::vector<std::pair<std::string, const Module*>> out;
  collect_modules(root, "", out);
  return out;
}

Module* find_module(Module& root, const std::string& qualified) {
  Module* m = &root;
  std::size_t start = 0;
  while (m != nullptr && start < qualified.size()) {
    const std::size_t dot = qualified.find('.', start);
    const std::size_t end = dot == std::string::npos ? qualified.size() : dot;
    m = m->child(qualified.substr(start, end - start));
    start = end + 1;
  }
  return m;
}

std::unique_ptr<Module> replace_module(Module& root, const std::string& qualified, std::unique_ptr<Module> module) {
  const auto [parent_name, local] = split_last(qualified);
  Module* parent = find_module(root, parent_name);
  if (parent == nullptr || qualified.empty()) {
    throw ConfigError(Where{.layer = qualified}, "only an existing module can be replaced", "a module of the model",
                      "no such module");
  }
  return parent->replace_child(local, std::move(module));
}

void copy_into(at::Tensor& destination, const at::Tensor& source, const std::string& name) {
  if (destination.is_meta()) {
    throw ConfigError(Where{.tensor = name}, "copy_ into a meta tensor copies nothing; materialize it first",
                      "a tensor with storage (cpu or cuda)", "a meta tensor (AutoGPTQ #551: the bias stayed on meta)");
  }
  if (destination.sizes() != source.sizes()) {
    throw ShapeError(Where{.tensor = name}, "copy_ needs equal shapes", shape_text(destination.sizes().vec()),
                     shape_text(source.sizes().vec()));
  }
  destination.copy_(source);
}

std::pair<std::string, std::string> split_last(const std::string& qualified) {
  const std::size_t dot = qualified.rfind('.');
  if (dot == std::string::npos) return {"", qualified};
  return {qualified.substr(0, dot), qualified.substr(dot + 1)};
}

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace qh::model
