-- The Docker API proxy's judge of container creates, run by HAProxy (haproxy.cfg.in).
--
-- A create is judged on what the Docker Engine will read, not on patterns in its text.
-- The engine decodes the body with Go's encoding/json into its create types: object keys
-- match field names case-insensitively, the last of two keys for one field wins, keys it
-- does not know are ignored, and it reads only the first JSON value. So the body is
-- decoded here first, strictly: one JSON object, nothing after it, no two keys in an
-- object that fold to the same name (the engine would read one of them, which need not be
-- the one judged). Then every field is checked against an allowlist: what the platform's
-- own launch sends, and the values it may take. A field not listed is refused, so a
-- setting the engine learns in a later version is refused until it is judged here.
--
-- The stack's rules come as key=value words in ETLSTACK_CREATE_RULES, which haproxy.cfg
-- sets before loading this file. A refused create gets txn.refusal set to the rule it
-- broke, which haproxy.cfg answers with 403 and logs.

local rules = {}
for key, value in (os.getenv("ETLSTACK_CREATE_RULES") or ""):gmatch("([%w_]+)=(%S+)") do
  rules[key] = value
end
for _, key in ipairs({ "network", "registry" }) do
  assert(rules[key], "create_judge.lua: ETLSTACK_CREATE_RULES has no " .. key)
end
for _, key in ipairs({
  "max_memory", "max_nano_cpus", "max_cpu_shares", "max_pids", "max_log_bytes", "max_log_files",
}) do
  rules[key] = assert(
    math.tointeger(tonumber(rules[key] or "")),
    "create_judge.lua: ETLSTACK_CREATE_RULES has no whole number " .. key
  )
end

local Refused = {}

local function refuse(message)
  error(setmetatable({ message = message }, Refused), 0)
end

-- ---- A strict JSON decoder -----------------------------------------------------------
-- Objects decode to { fields = { [lower-case key] = value }, keys = { [lower-case key] =
-- key as given } }; null decodes to nil, as the engine leaves a field it reads null from
-- at its default.

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
  r = "\r", t = "\t" }
local MAX_DEPTH = 16

local function decode(text)
  local position = 1

  local function skip_space()
    position = text:find("[^ \t\r\n]", position) or #text + 1
  end

  local function malformed()
    refuse("the body is not one JSON object (at byte " .. position .. ")")
  end

  local function literal(word, value)
    if text:sub(position, position + #word - 1) ~= word then
      malformed()
    end
    position = position + #word
    return value
  end

  local function string_value()
    local parts = {}
    position = position + 1
    while true do
      local stop = text:find('["\\%c]', position)
      if not stop then
        malformed()
      end
      parts[#parts + 1] = text:sub(position, stop - 1)
      local char = text:sub(stop, stop)
      if char == '"' then
        position = stop + 1
        return table.concat(parts)
      elseif char == "\\" then
        local escaped = ESCAPES[text:sub(stop + 1, stop + 1)]
        if not escaped then
          -- \u escapes above all: Go decodes them in keys too, so a key could spell a
          -- field in letters this judge never sees.
          refuse("the body has an escape sequence other than \\\" \\\\ \\/ \\b \\f \\n \\r \\t")
        end
        parts[#parts + 1] = escaped
        position = stop + 2
      else
        malformed()
      end
    end
  end

  local function number_value()
    local token = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", position)
    if not token or not token:match("^-?0$") and not token:match("^-?[1-9]") then
      malformed()
    end
    position = position + #token
    -- Integers stay integers; anything else (1.0, 1e3) is a float, which the engine
    -- refuses for its integer fields and this judge refuses too.
    local number = tonumber(token)
    if not number then
      malformed()
    end
    return token:find("[.eE]") and number + 0.0 or math.tointeger(number)
  end

  local value

  -- The members of an object or list, from its opening bracket to `close`: one
  -- `read_member()` each, separated by commas.
  local function members(close, read_member)
    position = position + 1
    skip_space()
    if text:sub(position, position) == close then
      position = position + 1
      return
    end
    while true do
      read_member()
      skip_space()
      local char = text:sub(position, position)
      position = position + 1
      if char == close then
        return
      elseif char ~= "," then
        malformed()
      end
    end
  end

  local function object_value(depth)
    local object = { fields = {}, keys = {} }
    members("}", function()
      skip_space()
      if text:sub(position, position) ~= '"' then
        malformed()
      end
      local key = string_value()
      local folded = key:lower()
      if object.keys[folded] then
        refuse(
          'the key "' .. key .. '" appears twice in one object (the engine folds case: "'
            .. object.keys[folded] .. '" is the same key) and the engine would read only one'
        )
      end
      object.keys[folded] = key
      skip_space()
      if text:sub(position, position) ~= ":" then
        malformed()
      end
      position = position + 1
      object.fields[folded] = value(depth + 1)
    end)
    return object
  end

  local function array_value(depth)
    local array = { items = {} }
    members("]", function()
      local item = value(depth + 1)
      if item == nil then
        refuse("a list in the body holds null")
      end
      array.items[#array.items + 1] = item
    end)
    return array
  end

  function value(depth)
    if depth > MAX_DEPTH then
      refuse("the body nests deeper than " .. MAX_DEPTH .. " levels")
    end
    skip_space()
    local char = text:sub(position, position)
    if char == "{" then
      return object_value(depth)
    elseif char == "[" then
      return array_value(depth)
    elseif char == '"' then
      return string_value()
    elseif char == "t" then
      return literal("true", true)
    elseif char == "f" then
      return literal("false", false)
    elseif char == "n" then
      return literal("null", nil)
    elseif char:match("[-%d]") then
      return number_value()
    end
    malformed()
  end

  skip_space()
  if text:sub(position, position) ~= "{" then
    malformed()
  end
  local document = value(0)
  skip_space()
  if position <= #text then
    -- The engine would read the first object and ignore the rest.
    refuse("the body has more after its JSON object")
  end
  return document
end

-- ---- Checks: each takes a field's value and its path in the body, and returns nil when
-- the value is fine or a message naming the field and what it must be. ------------------

local function is_object(v)
  return type(v) == "table" and v.fields ~= nil
end

local function is_array(v)
  return type(v) == "table" and v.items ~= nil
end

local function is_empty(v)
  if is_object(v) then
    -- By its keys: the engine keeps a map's key whose value is null (as "" or {}).
    return next(v.keys) == nil
  elseif is_array(v) then
    return #v.items == 0
  end
  return v == false or v == 0 or v == ""
end

local function zero(v, path)
  if v ~= nil and not is_empty(v) then
    return path .. " must be absent or empty"
  end
end

local function boolean(v, path)
  if v ~= nil and type(v) ~= "boolean" then
    return path .. " must be true or false"
  end
end

local function text(v, path)
  if v ~= nil and type(v) ~= "string" then
    return path .. " must be a string"
  end
end

local function all_strings(items)
  for _, item in pairs(items) do
    if type(item) ~= "string" then
      return false
    end
  end
  return true
end

local function strings(v, path)
  if v ~= nil and not (is_array(v) and all_strings(v.items)) then
    return path .. " must be a list of strings"
  end
end

local function string_map(v, path)
  if v ~= nil and not (is_object(v) and all_strings(v.fields)) then
    return path .. " must be an object of strings"
  end
end

-- A string, or a list of strings (the engine's StrSlice: Cmd, Entrypoint).
local function command(v, path)
  if type(v) ~= "string" then
    return strings(v, path)
  end
end

local function one_of(...)
  local choices = table.pack(...)
  local names = {}
  for i = 1, choices.n do
    names[#names + 1] = choices[i] == nil and "absent" or ('"' .. choices[i] .. '"')
  end
  return function(v, path)
    for i = 1, choices.n do
      if v == choices[i] then
        return nil
      end
    end
    return path .. " must be " .. table.concat(names, " or ")
  end
end

local function integer(low, high, needed)
  return function(v, path)
    if v == nil and not needed then
      return nil
    end
    if math.type(v) ~= "integer" or v < low or v > high then
      return path .. " must be a whole number from " .. low .. " to " .. high
    end
  end
end

local function required(check)
  return function(v, path)
    if v == nil then
      return path .. " must be set"
    end
    return check(v, path)
  end
end

local check_object

local function object_of(schema)
  return function(v, path)
    return check_object(v, path, schema)
  end
end

-- A numeric uid and gid, neither 0: an image's default user may be root, and a user
-- name is looked up in the image, which the image's author decides.
local function task_user(v, path)
  if type(v) ~= "string" or not (v:match("^[1-9]%d*$") or v:match("^[1-9]%d*:[1-9]%d*$")) then
    return path .. " must be a numeric user and group other than root, such as 10001:10001"
  end
end

local REGISTRY = rules.registry:gsub("%p", "%%%0")

local function pipeline_image(v, path)
  if type(v) ~= "string" or not v:match("^" .. REGISTRY .. "/[a-z0-9._/-]+[:@]?[%w_.:-]*$") then
    return path .. " must be an image of the platform's registry (" .. rules.registry .. "/...)"
  end
end

local function task_network(v, path)
  if v ~= rules.network and v ~= "none" then
    return path .. ' must be "' .. rules.network .. '" (the pipelines network) or "none"'
  end
end

local function no_new_privileges(v, path)
  if not is_array(v) or #v.items ~= 1
    or (v.items[1] ~= "no-new-privileges" and v.items[1] ~= "no-new-privileges:true")
  then
    return path .. ' must be exactly ["no-new-privileges"]'
  end
end

local function drops_all(v, path)
  for _, item in ipairs(is_array(v) and v.items or {}) do
    if item == "ALL" then
      return nil
    end
  end
  return path .. ' must hold "ALL"'
end

local SIZE_UNITS = { [""] = 1, k = 1000, m = 1000 ^ 2, g = 1000 ^ 3 }

-- A bounded log: json-file or local, with a maximum file size and count within the
-- stack's maxima (the engine's default json-file log grows without end).
local function bounded_log(v, path)
  local fields = is_object(v) and v.fields or {}
  local options = is_object(fields.config) and fields.config.fields or {}
  local size = options["max-size"]
  local digits, unit = tostring(size):match("^([1-9]%d*)([kmg]?)$")
  local files = options["max-file"]
  local fine = (fields.type == "json-file" or fields.type == "local")
    and type(size) == "string" and digits ~= nil
    and tonumber(digits) * SIZE_UNITS[unit] <= rules.max_log_bytes
    and (files == nil or type(files) == "string" and files:match("^[1-9]%d*$") ~= nil
      and tonumber(files) <= rules.max_log_files)
  for key, _ in pairs(is_object(fields.config) and fields.config.keys or {}) do
    fine = fine and (key == "max-size" or key == "max-file")
  end
  if not fine then
    return path .. " must be json-file or local with max-size up to " .. rules.max_log_bytes
      .. " bytes, max-file up to " .. rules.max_log_files .. " and no other option"
  end
end

local function no_restart(v, path)
  local fields = is_object(v) and v.fields or {}
  if v ~= nil and (not is_object(v) or not is_empty(fields.name or "") and fields.name ~= "no"
    or not is_empty(fields.maximumretrycount or 0))
  then
    return path .. ' must be absent or {"Name": "no"}: the platform retries tasks, not the engine'
  end
end

-- Mounts: only tmpfs and anonymous volumes, never a host path or a named volume (the
-- database's volume is one), and no volume driver (a driver can bind a host path).
local MOUNT = {
  Type = one_of("tmpfs", "volume"),
  Target = required(text),
  Source = zero,
  ReadOnly = boolean,
  Consistency = zero,
  TmpfsOptions = object_of({ SizeBytes = integer(0, rules.max_memory), Mode = integer(0, 4095) }),
  VolumeOptions = object_of({ NoCopy = boolean, Labels = string_map }),
}

local function mounts(v, path)
  if v ~= nil and not is_array(v) then
    return path .. " must be a list"
  end
  for index, mount in ipairs(v and v.items or {}) do
    local problem = check_object(mount, path .. "[" .. (index - 1) .. "]", MOUNT)
    if problem then
      return problem
    end
  end
end

local HOST_CONFIG = {
  -- What the task gets: the pipelines network, limits within the stack's maxima, no
  -- privileges, its own cgroup namespace, a bounded log, no restarts.
  NetworkMode = task_network,
  Memory = integer(1, rules.max_memory, true),
  MemorySwap = integer(0, 2 * rules.max_memory),
  MemoryReservation = integer(0, rules.max_memory),
  NanoCpus = integer(1, rules.max_nano_cpus, true),
  CpuShares = integer(0, rules.max_cpu_shares),
  PidsLimit = integer(1, rules.max_pids, true),
  CapDrop = drops_all,
  SecurityOpt = no_new_privileges,
  -- Asked for explicitly: on a cgroup v1 host the engine's default is the host's.
  CgroupnsMode = one_of("private"),
  LogConfig = bounded_log,
  RestartPolicy = no_restart,
  Mounts = mounts,
  AutoRemove = boolean,
  ReadonlyRootfs = boolean,
  Init = boolean,
  ShmSize = integer(0, rules.max_memory),
  OomScoreAdj = integer(0, 1000),
  IpcMode = one_of(nil, "", "private", "none"),
}
-- What docker-py sends empty when it is not asked for, and must stay so: host paths,
-- devices, capabilities, namespaces, runtimes, ports, links, cgroups...
for _, name in ipairs({
  "Binds", "Links", "VolumesFrom", "CapAdd", "Devices", "DeviceRequests", "DeviceCgroupRules",
  "Ulimits", "GroupAdd", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "PortBindings",
  "PublishAllPorts", "Privileged", "OomKillDisable", "Sysctls", "Tmpfs", "StorageOpt",
  "Annotations", "PidMode", "UTSMode", "UsernsMode", "Runtime", "CgroupParent", "Cgroup",
  "VolumeDriver", "Isolation", "ContainerIDFile", "CpusetCpus", "CpusetMems", "CpuPeriod",
  "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuCount", "CpuPercent",
  "KernelMemory", "BlkioWeight",
}) do
  HOST_CONFIG[name] = zero
end

-- Anonymous volumes by path: { "/path": {} }.
local function volumes(v, path)
  for _, item in pairs(is_object(v) and v.fields or {}) do
    if not (is_object(item) and is_empty(item)) then
      return path .. " must map paths to {}"
    end
  end
  if v ~= nil and not is_object(v) then
    return path .. " must be an object of paths"
  end
end

local CREATE = {
  Image = pipeline_image,
  User = task_user,
  Cmd = command,
  Entrypoint = command,
  Env = strings,
  Labels = string_map,
  WorkingDir = text,
  Hostname = text,
  Domainname = text,
  Tty = boolean,
  AttachStdout = boolean,
  AttachStderr = boolean,
  -- Input is never attached (the proxy's attach takes no stdin).
  AttachStdin = zero,
  OpenStdin = zero,
  StdinOnce = zero,
  ExposedPorts = zero,
  Volumes = volumes,
  NetworkDisabled = boolean,
  MacAddress = zero,
  StopSignal = text,
  StopTimeout = integer(0, 3600),
  HostConfig = required(object_of(HOST_CONFIG)),
  NetworkingConfig = object_of({ EndpointsConfig = zero }),
}

local function sorted_keys(map)
  local keys = {}
  for key, _ in pairs(map) do
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return keys
end

-- The first problem with `object` (at `path`) against `schema` (field name -> check), in
-- a fixed order: a field the schema does not know, then each field's check, which may
-- require a field the object lacks.
function check_object(object, path, schema)
  if object == nil then
    return nil
  end
  if not is_object(object) then
    return path .. " must be an object"
  end
  local where = path == "" and "" or path .. "."
  local known = {}
  for name, _ in pairs(schema) do
    known[name:lower()] = true
  end
  for _, folded in ipairs(sorted_keys(object.keys)) do
    -- null leaves a field at the engine's default, as docker-py sends what it is not
    -- asked for (Healthcheck, Runtime...).
    if not known[folded] and object.fields[folded] ~= nil then
      return where .. object.keys[folded] .. " is not a setting a task container may have"
    end
  end
  for _, name in ipairs(sorted_keys(schema)) do
    local folded = name:lower()
    local problem = schema[name](object.fields[folded], where .. (object.keys[folded] or name))
    if problem then
      return problem
    end
  end
end

local function judge(body)
  local document = decode(body)
  return check_object(document, "", CREATE)
end

-- Sets txn.create_verdict: "accepted", or "refused" with the rule in txn.refusal. A
-- judge that fails is a refusal too; haproxy.cfg refuses a create with no verdict.
core.register_action("judge_create", { "http-req" }, function(txn)
  local ok, problem = pcall(judge, txn.f:req_body() or "")
  if not ok then
    problem = getmetatable(problem) == Refused and problem.message
      or "the proxy could not judge it (" .. tostring(problem) .. ")"
  end
  if problem then
    txn:set_var("txn.refusal", "container create: " .. problem)
    txn:set_var("txn.create_verdict", "refused")
  else
    txn:set_var("txn.create_verdict", "accepted")
  end
end, 0)
