// libsmelt from JavaScript through GObject introspection (GJS).
//
// The same checks as test_gi.py, from another language binding: the
// typelib from the build tree, the registry as a GListModel, every
// feature's properties against `smelt plugins NAME --json`, a recipe built
// in code run with run_async() on a GLib main loop, reporting every block
// (progress on the main thread, intermediate fractions that never
// decrease and end at 1.0, current-tensor naming the model's tensors,
// complete files), a run on a 125 MB model (made by gi_check.py, as for
// the Python tests) cancelled from the first progress handler
// that sees it midway (G_IO_ERROR_CANCELLED, promptly, no file left
// behind), and plugins loaded by a job's worker thread whose notify::state
// still arrives on the main thread (GJS aborts on a call from another
// thread, with G_DEBUG=fatal-criticals).
//
//   gjs test_gi.js SMELT_TOOL DEMO_DIR WORKDIR TYPELIB_DIR GI_CHECK_PY

imports.gi.versions.Smelt = '1';
imports.gi.versions.GIRepository = '2.0';
const {GIRepository, GLib, Gio, GObject, Smelt} = imports.gi;
const System = imports.system;

const [smeltTool, demo, workdir, typelibDir, giCheck] = ARGV;

function fail(msg) {
    printerr(`FAIL: ${msg}`);
    System.exit(1);
}

function check(cond, msg) {
    if (!cond)
        fail(msg);
}

// on the thread that runs the main loop, the default context is owned
function onMainThread() {
    return GLib.MainContext.default().is_owner();
}

function readBytes(path) {
    const [ok, bytes] = GLib.file_get_contents(path);
    check(ok, `cannot read ${path}`);
    return bytes;
}

// a safetensors header, checked against the file's size (from the format's
// specification: u64 little-endian header length, JSON, then the data)
function readSafetensors(path) {
    const bytes = readBytes(path);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = Number(view.getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    const dataLen = bytes.byteLength - 8 - n;
    const widths = {F32: 4, F16: 2, BF16: 2};
    let end = 0;
    delete header.__metadata__;
    for (const [name, info] of Object.entries(header)) {
        const [b, e] = info.data_offsets;
        const elems = info.shape.reduce((a, d) => a * d, 1);
        check(e - b === elems * widths[info.dtype], `${path}: ${name} has the wrong size`);
        end = Math.max(end, e);
    }
    check(end === dataLen, `${path}: ${dataLen} bytes of data, header covers ${end}`);
    return header;
}

function listFiles(root) {
    const out = [];
    const walk = (dir, rel) => {
        const en = Gio.File.new_for_path(dir).enumerate_children('standard::name,standard::type',
            Gio.FileQueryInfoFlags.NONE, null);
        let info;
        while ((info = en.next_file(null)) !== null) {
            const name = info.get_name();
            if (info.get_file_type() === Gio.FileType.DIRECTORY)
                walk(GLib.build_filenamev([dir, name]), rel + name + '/');
            else
                out.push(rel + name);
        }
    };
    if (GLib.file_test(root, GLib.FileTest.IS_DIR))
        walk(root, '');
    return out.sort();
}

function runTool(args) {
    const proc = Gio.Subprocess.new([smeltTool, ...args],
        Gio.SubprocessFlags.STDOUT_PIPE | Gio.SubprocessFlags.STDERR_PIPE);
    const [, stdout] = proc.communicate_utf8(null, null);
    check(proc.get_successful(), `smelt ${args.join(' ')} failed`);
    return JSON.parse(stdout);
}

function checkPlugins(registry) {
    check(registry instanceof Gio.ListModel, 'the registry is not a GListModel');
    check(registry.get_item_type() === Smelt.Plugin.$gtype, 'item type is not SmeltPlugin');
    const plugins = [];
    for (let i = 0; i < registry.get_n_items(); i++)
        plugins.push(registry.get_item(i));
    const names = plugins.map(p => p.get_name()).sort();
    for (const want of ['gguf-quant', 'localfs', 'merged16', 'safetensors-lora'])
        check(names.includes(want), `plugin ${want} not listed (have ${names})`);
    const cli = runTool(['plugins', '--json']).map(p => p.name).sort();
    check(JSON.stringify(cli) === JSON.stringify(names), `the CLI lists ${cli}, GI ${names}`);

    let nProps = 0;
    for (const plugin of plugins) {
        plugin.load();
        check(plugin.get_state() === Smelt.PluginState.LOADED, `${plugin.get_name()} did not load`);
        const cliOptions = {};
        for (const f of runTool(['plugins', plugin.get_name(), '--json']).features)
            cliOptions[f.name] = Object.fromEntries((f.options || []).map(o => [o.key, o.description]));
        for (const feature of plugin.list_features()) {
            const [ok, kind] = plugin.get_feature_kind(feature);
            check(ok, `${feature}: no kind`);
            const obj = kind === Smelt.FeatureKind.FORMAT
                ? registry.create_format(feature) : registry.create_destination(feature);
            check(obj.constructor.$gtype === plugin.get_feature_type(feature), `${feature}: wrong type`);
            const props = {};
            for (const p of obj.constructor.list_properties()) {
                if ((p.flags & GObject.ParamFlags.WRITABLE) && p.name !== 'name')
                    props[p.get_nick()] = p.get_blurb();
            }
            print(`${plugin.get_name()}/${feature}: ${Object.keys(props).sort().join(', ')}`);
            const want = cliOptions[feature] || {};
            check(JSON.stringify(Object.entries(props).sort()) === JSON.stringify(Object.entries(want).sort()),
                `${feature}: GI sees ${JSON.stringify(props)}, the CLI ${JSON.stringify(want)}`);
            nProps += Object.keys(props).length;
        }
    }
    check(nProps > 0, 'no plugin has a property');
}

function makeRecipe(dest, from = demo) {
    const recipe = Smelt.Recipe.new();
    recipe.set_name('gi-gjs');
    recipe.set_model(GLib.build_filenamev([from, 'model']));
    recipe.add_adapter(GLib.build_filenamev([from, 'adapter']), 1.0);
    recipe.add_destination('out', 'localfs');
    recipe.set_option('out', 'Path', dest);
    recipe.set_option('out', 'Overwrite', 'true');
    recipe.add_export('merged', 'merged16', 'out');
    recipe.set_option('merged', 'DType', 'bf16');
    recipe.add_export('gguf', 'gguf-quant', 'out');
    recipe.set_option('gguf', 'Types', 'q8_0');
    recipe.set_option('gguf', 'Name', 'gi');
    recipe.set_option('gguf', 'Pre', 'gpt-2');
    return recipe;
}

// runs the job on a fresh main loop; returns {ok, error}
function runOnLoop(job, cancellable, onProgress) {
    const loop = new GLib.MainLoop(null, false);
    const result = {};
    job.connect('progress', onProgress);
    job.run_async(cancellable, (source, res) => {
        check(onMainThread(), 'the result arrived off the main thread');
        try {
            result.ok = source.run_finish(res);
        } catch (e) {
            result.ok = false;
            result.error = e;
        }
        loop.quit();
    });
    GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 120, () => fail('the job never finished'));
    loop.run();
    return result;
}

function testExport(registry) {
    const dest = GLib.build_filenamev([workdir, 'export']);
    const recipe = makeRecipe(dest);
    recipe.validate(registry);
    const job = Smelt.ExportJob.new(recipe, registry);
    check(job.progress_interval === 100, `progress-interval ${job.progress_interval}`);
    job.progress_interval = 0; // every block: the demo takes milliseconds
    const fractions = [], stages = [], tensors = new Set();
    job.connect('notify::fraction', () => check(onMainThread(), 'notify::fraction off the main thread'));
    job.connect('notify::current-tensor', () => check(onMainThread(), 'notify::current-tensor off the main thread'));
    const r = runOnLoop(job, null, j => {
        check(onMainThread(), 'progress emitted off the main thread');
        fractions.push(j.fraction);
        if (stages[stages.length - 1] !== j.stage)
            stages.push(j.stage);
        if (j.stage === 'exporting' && j.current_tensor)
            tensors.add(j.current_tensor);
    });
    check(r.ok, `the export failed: ${r.error}`);
    print(`export: ${fractions.length} progress emissions, stages ${stages}`);
    check(fractions.length >= 3, `only ${fractions.length} progress emissions`);
    for (let i = 1; i < fractions.length; i++)
        check(fractions[i] >= fractions[i - 1], `fraction went backwards: ${fractions}`);
    check(fractions[fractions.length - 1] === 1.0 && job.get_fraction() === 1.0, `fraction ends at ${fractions}`);
    const between = new Set(fractions.filter(f => f > 0 && f < 1));
    check(between.size >= 5, `only ${between.size} fractions between 0 and 1: ${fractions}`);
    check(stages[0] === 'preparing' && stages[stages.length - 1] === 'done', `stages ${stages}`);

    const files = listFiles(dest);
    print(`files: ${files}`);
    check(!files.some(f => f.endsWith('.partial')), `partial files: ${files}`);
    const base = {};
    const index = JSON.parse(new TextDecoder().decode(readBytes(GLib.build_filenamev([demo, 'model', 'model.safetensors.index.json']))));
    for (const shard of new Set(Object.values(index.weight_map)))
        Object.assign(base, readSafetensors(GLib.build_filenamev([demo, 'model', shard])));
    const merged = {};
    for (const f of files.filter(x => x.endsWith('.safetensors')))
        Object.assign(merged, readSafetensors(GLib.build_filenamev([dest, f])));
    check(JSON.stringify(Object.keys(merged).sort()) === JSON.stringify(Object.keys(base).sort()),
        'the merged tensors are not the base model\'s');
    const strangers = [...tensors].filter(t => !(t in base));
    check(tensors.size > 0 && strangers.length === 0, `current-tensor names not in the model: ${strangers}`);
    check(tensors.size >= Object.keys(base).length / 2,
        `current-tensor named ${tensors.size} of ${Object.keys(base).length} tensors`);
    for (const [name, info] of Object.entries(merged)) {
        check(JSON.stringify(info.shape) === JSON.stringify(base[name].shape), `${name}: shape`);
        check(info.dtype === 'BF16', `${name}: dtype ${info.dtype}`);
    }
    const ggufs = files.filter(x => x.endsWith('.gguf'));
    check(ggufs.length === 1, `gguf files ${ggufs}`);
    const g = readBytes(GLib.build_filenamev([dest, ggufs[0]]));
    check(new TextDecoder().decode(g.subarray(0, 4)) === 'GGUF', `${ggufs[0]} is not GGUF`);
}

// A 125 MB bf16 model and its adapter: quantizing it to Q4_K_M on one
// thread takes about a second, so progress reports (every 100 ms) arrive
// while it is under way.
function makeMidModel() {
    const dir = GLib.build_filenamev([workdir, 'mid']);
    const [, , err, status] = GLib.spawn_sync(null, ['/usr/bin/python3', giCheck, 'mid-model', dir],
        null, GLib.SpawnFlags.DEFAULT, null);
    check(status === 0, `gi_check.py mid-model: ${new TextDecoder().decode(err)}`);
    return dir;
}

function testCancel(registry) {
    const mid = makeMidModel();
    const dest = GLib.build_filenamev([workdir, 'cancelled']);
    const recipe = makeRecipe(dest, mid);
    recipe.set_option('gguf', 'Types', 'q4_k_m');
    recipe.set_option('gguf', 'Report', 'false');
    const job = Smelt.ExportJob.new(recipe, registry);
    job.set_n_threads(1);
    const cancellable = new Gio.Cancellable();
    const fractions = [];
    let at = null, fraction = null;
    const r = runOnLoop(job, cancellable, j => {
        check(onMainThread(), 'progress emitted off the main thread');
        fractions.push(j.fraction);
        if (j.stage === 'exporting' && j.fraction >= 0.25 && j.fraction <= 0.75 && at === null) {
            at = GLib.get_monotonic_time();
            fraction = j.fraction;
            cancellable.cancel();
        }
    });
    check(at !== null, `no progress report midway through exporting: ${fractions}`);
    for (let i = 1; i < fractions.length; i++)
        check(fractions[i] >= fractions[i - 1], `fraction went backwards: ${fractions}`);
    const ms = (GLib.get_monotonic_time() - at) / 1000;
    check(!r.ok && r.error, 'the cancelled job succeeded');
    check(r.error.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED), `error: ${r.error}`);
    print(`cancelled at fraction ${fraction.toFixed(3)}; finished ${ms.toFixed(0)} ms later: ${r.error.message}`);
    check(ms < 5000, `cancellation took ${ms} ms`);
    const left = listFiles(dest);
    check(left.length === 0, `files left behind: ${left}`);
    GLib.spawn_sync(null, ['rm', '-rf', mid], null, GLib.SpawnFlags.SEARCH_PATH, null);
}

// Plugins first used by a job load on its worker thread; their
// notify::state must still come on the main thread.
function testPluginState() {
    const registry = Smelt.Registry.new([GLib.getenv('SMELT_PLUGIN_PATH')]);
    const plugins = {};
    for (let i = 0; i < registry.get_n_items(); i++) {
        const p = registry.get_item(i);
        plugins[p.get_name()] = p;
    }
    const used = ['merged16', 'gguf-quant', 'localfs'];
    const changes = [];
    for (const name of used)
        check(plugins[name].get_state() === Smelt.PluginState.LISTED, `${name} is already loaded`);
    for (const p of Object.values(plugins)) {
        p.connect('notify::state', obj => {
            check(onMainThread(), `notify::state of ${obj.get_name()} off the main thread`);
            changes.push(`${obj.get_name()}:${obj.get_state()}`);
        });
    }
    const job = Smelt.ExportJob.new(makeRecipe(GLib.build_filenamev([workdir, 'state'])), registry);
    const r = runOnLoop(job, null, () => {});
    check(r.ok, `the export failed: ${r.error}`);
    const ctx = GLib.MainContext.default();
    while (ctx.pending())
        ctx.iteration(false);
    for (const name of used) {
        check(plugins[name].get_state() === Smelt.PluginState.LOADED, `${name} was not loaded`);
        check(changes.includes(`${name}:${Smelt.PluginState.LOADED}`), `no notify::state for ${name}: ${changes}`);
    }
    check(new Set(changes).size === changes.length, `a state change was notified twice: ${changes}`);
    print(`plugin state: ${changes.length} notifications on the main thread`);
}

const typelib = GIRepository.Repository.get_default().get_typelib_path('Smelt');
check(Gio.File.new_for_path(typelib).get_parent().equal(Gio.File.new_for_path(typelibDir)),
    `Smelt came from ${typelib}, not ${typelibDir}`);
GLib.mkdir_with_parents(workdir, 0o755);
const registry = Smelt.Registry.get_default();
checkPlugins(registry);
testExport(registry);
testCancel(registry);
testPluginState();
print('ok');
