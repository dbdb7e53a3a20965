// `livetrace dump --flame-graph FILE.svg`: an interactive SVG flame graph
// drawn by LiveTrace from the calling-context tree (CallTree), in Brendan
// Gregg's layout: the root ("all") at the bottom, each call path a frame
// above its caller, width by total time, siblings by name. One file, no
// external resource: its script (below) gives
//   - hover: name, total time, share of all and calls in the line at the
//     bottom (and a native tooltip);
//   - click: zoom on a frame (its callers stay, full width, faded);
//     "Reset zoom" or a click on "all" goes back;
//   - search (the "Search" button or Ctrl-F): frames whose name matches a
//     regular expression turn magenta; the share they cover is shown.
// The root element says what is shown (`data-zoomed`, `data-matched`), and
// the URL fragment `#zoom=NAME` / `#search=REGEX` does a click or a search
// at load: how tests drive it in a headless browser.
// Frames narrower than 0.05 px at full width are left out (the file stays
// small whatever the number of call paths), as flamegraph.pl's minwidth.
import LiveTraceRecording

public enum FlameGraph {
    static let width = 1200.0
    static let frameHeight = 16.0
    static let top = 50.0
    static let bottom = 30.0
    static let padding = 10.0
    static let minimumWidth = 0.05

    public static func write(
        directory: String, to path: String, progress: ((Int, Int) -> Void)? = nil
    ) throws(RecordingError) -> [RecordingError] {
        let (tree, info, damage) = try CallTree.build(directory: directory, progress: progress)
        let output = try TextOutput(creating: path)
        render(tree, title: "livetrace: " + info.command.joined(separator: " "), to: output)
        output.flush()
        if let error = output.error { throw error }
        return damage
    }

    /// The SVG of `tree`.
    public static func render(_ tree: CallTree, title: String, to output: TextOutput) {
        let total = max(tree.rootTicks, 1)
        let usable = width - 2 * padding
        // Depth-first layout: (node, depth, x as a share of all).
        struct Frame { var node: Int; var depth: Int; var x: Double; var w: Double }
        var frames: [Frame] = []
        var stack: [Frame] = [Frame(node: 0, depth: 0, x: 0, w: 1)]
        var maxDepth = 0
        while let frame = stack.popLast() {
            frames.append(frame)
            maxDepth = max(maxDepth, frame.depth)
            var x = frame.x
            var children: [Frame] = []
            for child in tree.sortedChildren(frame.node) {
                let w = Double(tree.nodes[child].totalTicks) / Double(total)
                if w * usable >= minimumWidth { children.append(Frame(node: child, depth: frame.depth + 1, x: x, w: w)) }
                x += w
            }
            stack.append(contentsOf: children.reversed())
        }
        let height = top + bottom + Double(maxDepth + 1) * frameHeight
        output.write("""
            <?xml version="1.0" standalone="no"?>
            <svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" data-zoomed="all" data-matched="" onload="flameInit()">
            <style>
            text { font-family: Verdana, sans-serif; font-size: 12px; fill: rgb(0,0,0); }
            g.f:hover rect { stroke: black; stroke-width: 0.5; cursor: pointer; }
            g.f.parent rect { opacity: 0.5; }
            #title { font-size: 17px; text-anchor: middle; }
            .button { cursor: pointer; fill: rgb(60,60,160); }
            </style>
            <script type="text/ecmascript"><![CDATA[
            \(script)
            ]]></script>
            <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="rgb(245,245,235)"/>
            <text id="title" x="\(Int(width / 2))" y="24">\(escaped(title))</text>
            <text id="unzoom" class="button" x="\(Int(padding))" y="24" onclick="flameUnzoom()" opacity="0">Reset zoom</text>
            <text id="search" class="button" x="\(Int(width - padding - 60))" y="24" onclick="flameSearch()">Search</text>
            <text id="matched" x="\(Int(width - padding - 160))" y="\(Int(height - 10))"> </text>
            <text id="details" x="\(Int(padding))" y="\(Int(height - 10))"> </text>
            <g id="frames">

            """)
        for frame in frames {
            let node = tree.nodes[frame.node]
            let name = tree.name(frame.node)
            let ticks = frame.node == 0 ? total : node.totalTicks
            let share = Double(ticks) / Double(total) * 100
            let calls = frame.node == 0 ? "" : ", \(node.calls) call\(node.calls == 1 ? "" : "s")"
            let info = "\(name) (\(TraceReport.duration(tree.nanoseconds(ticks))), \(percent(share))\(calls))"
            let x = padding + frame.x * usable, w = frame.w * usable
            let y = height - bottom - Double(frame.depth + 1) * frameHeight
            output.write("<g class=\"f\" data-name=\"\(escaped(name))\" data-x=\"\(frame.x)\" data-w=\"\(frame.w)\" data-d=\"\(frame.depth)\" data-info=\"\(escaped(info))\">")
            output.write("<title>\(escaped(info))</title>")
            output.write("<rect x=\"\(fixed(x))\" y=\"\(fixed(y))\" width=\"\(fixed(max(w - 0.5, 0)))\" height=\"\(fixed(frameHeight - 1))\" fill=\"\(color(name, root: frame.node == 0))\" rx=\"2\"/>")
            output.write("<text x=\"\(fixed(x + 3))\" y=\"\(fixed(y + frameHeight - 4.5))\">\(escaped(label(name, width: w)))</text></g>\n")
        }
        output.write("</g>\n</svg>\n")
    }

    /// The text that fits a frame `width` pixels wide (about 7 px a
    /// character), cut with "..", or nothing.
    static func label(_ name: String, width: Double) -> String {
        let fits = Int((width - 6) / 7)
        if fits < 3 { return "" }
        return name.count <= fits ? name : String(name.prefix(fits - 2)) + ".."
    }

    /// Warm colours (flamegraph.pl's "hot" palette), fixed per name.
    static func color(_ name: String, root: Bool) -> String {
        if root { return "rgb(200,200,200)" }
        var hash: UInt32 = 2_166_136_261
        for byte in name.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let r = 205 + Int(hash % 50), g = Int((hash >> 8) % 230), b = Int((hash >> 16) % 55)
        return "rgb(\(r),\(g),\(b))"
    }

    static func escaped(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    static func fixed(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e12 else { return "0.00" }
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    static func percent(_ value: Double) -> String { fixed(value) + "%" }

    static let script = """
        var flameFrames = [], flameSvg, flameDetails, flameMatched, flameUnzoomButton;
        var flameWidth = \(width), flamePad = \(padding);
        function flameInit() {
          flameSvg = document.documentElement;
          flameFrames = Array.prototype.slice.call(document.querySelectorAll('g.f'));
          flameDetails = document.getElementById('details');
          flameMatched = document.getElementById('matched');
          flameUnzoomButton = document.getElementById('unzoom');
          flameFrames.forEach(function (f) {
            f.addEventListener('mouseover', function () { flameDetails.textContent = f.getAttribute('data-info'); });
            f.addEventListener('mouseout', function () { flameDetails.textContent = ' '; });
            f.addEventListener('click', function () { flameZoom(f); });
          });
          window.addEventListener('keydown', function (e) {
            if ((e.ctrlKey || e.metaKey) && e.key === 'f') { e.preventDefault(); flameSearch(); }
          });
          var hash = decodeURIComponent(location.hash.slice(1));
          if (hash.indexOf('zoom=') === 0) {
            var target = flameFrames.filter(function (f) { return f.getAttribute('data-name') === hash.slice(5); })[0];
            if (target) target.dispatchEvent(new MouseEvent('click', { bubbles: true }));
          } else if (hash.indexOf('search=') === 0) {
            flameSearch(hash.slice(7));
          }
        }
        function flameNumber(f, key) { return parseFloat(f.getAttribute('data-' + key)); }
        function flamePlace(f, x, w) {
          var usable = flameWidth - 2 * flamePad, px = flamePad + x * usable, pw = w * usable;
          var r = f.querySelector('rect'), t = f.querySelector('text'), name = f.getAttribute('data-name');
          r.setAttribute('x', px.toFixed(2));
          r.setAttribute('width', Math.max(pw - 0.5, 0).toFixed(2));
          t.setAttribute('x', (px + 3).toFixed(2));
          var fits = Math.floor((pw - 6) / 7);
          t.textContent = fits < 3 ? '' : (name.length <= fits ? name : name.slice(0, fits - 2) + '..');
        }
        function flameZoom(g) {
          var x0 = flameNumber(g, 'x'), w0 = flameNumber(g, 'w'), d0 = flameNumber(g, 'd'), e = 1e-9;
          flameFrames.forEach(function (f) {
            var x = flameNumber(f, 'x'), w = flameNumber(f, 'w'), d = flameNumber(f, 'd');
            var inside = d >= d0 && x >= x0 - e && x + w <= x0 + w0 + e;
            var caller = d < d0 && x <= x0 + e && x + w >= x0 + w0 - e;
            if (!inside && !caller) { f.style.display = 'none'; return; }
            f.style.display = '';
            if (caller) f.classList.add('parent'); else f.classList.remove('parent');
            flamePlace(f, inside ? (x - x0) / w0 : 0, inside ? w / w0 : 1);
          });
          flameSvg.setAttribute('data-zoomed', g.getAttribute('data-name'));
          flameUnzoomButton.setAttribute('opacity', d0 > 0 ? '1' : '0');
        }
        function flameUnzoom() { flameZoom(flameFrames[0]); }
        function flameSearch(term) {
          if (term === undefined) term = window.prompt('Search for a function (regular expression)', '');
          var spans = [];
          flameFrames.forEach(function (f) {
            var hit = !!term && new RegExp(term).test(f.getAttribute('data-name')) && flameNumber(f, 'd') > 0;
            f.querySelector('rect').style.fill = hit ? 'rgb(230,0,230)' : '';
            if (hit) spans.push([flameNumber(f, 'x'), flameNumber(f, 'x') + flameNumber(f, 'w')]);
          });
          spans.sort(function (a, b) { return a[0] - b[0]; });
          var covered = 0, end = -1;
          spans.forEach(function (s) {
            if (s[1] <= end) return;
            covered += s[1] - Math.max(s[0], end);
            end = s[1];
          });
          var share = term ? (100 * covered).toFixed(2) + '%' : '';
          flameMatched.textContent = term ? 'Matched: ' + share : ' ';
          flameSvg.setAttribute('data-matched', share);
        }
        """
}
