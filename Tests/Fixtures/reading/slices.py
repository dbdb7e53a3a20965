"""Decodes a `livetrace dump` output with tools that share no code with
LiveTrace and prints, as JSON, each thread's slices in begin order as
[name, depth] pairs, after checking what a viewer needs:

  slices.py chrome FILE     Chrome Trace Event JSON (python's json)
  slices.py perfetto FILE   Perfetto protobuf (python3-protobuf, with a
                            descriptor built here from Perfetto's published
                            field numbers)

Output: {"threads": {"TID": [[name, depth], ...]}, "process": NAME,
"ends": {END: count}}, where END is how a slice that did not return
normally ended (Chrome: the E event's args.end; Perfetto: the SLICE_END's
debug annotation "end").
Exits 1 with a message on the first check that fails."""
import json
import sys


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def chrome(path):
    with open(path) as f:
        document = json.load(f)
    threads, stacks, last, process, ends = {}, {}, {}, None, {}
    for event in document["traceEvents"]:
        for key in ("ph", "pid", "tid"):
            if key not in event:
                fail("event without %s: %r" % (key, event))
        phase, tid = event["ph"], event["tid"]
        if phase == "M":
            if event["name"] == "process_name":
                process = event["args"]["name"]
            continue
        if not isinstance(event["ts"], (int, float)):
            fail("ts is not a number: %r" % event)
        if event["ts"] < last.get(tid, 0):
            fail("ts goes back on thread %s: %r" % (tid, event))
        last[tid] = event["ts"]
        stack = stacks.setdefault(tid, [])
        if phase == "B":
            if not event.get("name"):
                fail("B without a name: %r" % event)
            threads.setdefault(str(tid), []).append([event["name"], len(stack)])
            stack.append(event["name"])
        elif phase == "E":
            if not stack:
                fail("E without B on thread %s" % tid)
            stack.pop()
            end = event.get("args", {}).get("end")
            if end is not None:
                ends[end] = ends.get(end, 0) + 1
        elif phase != "i":
            fail("unexpected phase %r" % phase)
    for tid, stack in stacks.items():
        if stack:
            fail("thread %s ends with open slices %r" % (tid, stack))
    return {"threads": threads, "process": process, "ends": ends}


def perfetto(path):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="perfetto_subset.proto", package="perfetto.protos", syntax="proto2")

    def message(name, fields):
        m = proto.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            label = F.LABEL_REPEATED if field_name in ("packet", "debug_annotations") else F.LABEL_OPTIONAL
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = ".perfetto.protos." + type_name

    # Field numbers as published in protos/perfetto/trace/*.proto.
    message("ProcessDescriptor", [("pid", 1, F.TYPE_INT32, None), ("process_name", 6, F.TYPE_STRING, None)])
    message("ThreadDescriptor", [("pid", 1, F.TYPE_INT32, None), ("tid", 2, F.TYPE_INT32, None),
                                 ("thread_name", 5, F.TYPE_STRING, None)])
    message("TrackDescriptor", [("uuid", 1, F.TYPE_UINT64, None), ("name", 2, F.TYPE_STRING, None),
                                ("process", 3, F.TYPE_MESSAGE, "ProcessDescriptor"),
                                ("thread", 4, F.TYPE_MESSAGE, "ThreadDescriptor"),
                                ("parent_uuid", 5, F.TYPE_UINT64, None)])
    message("DebugAnnotation", [("string_value", 6, F.TYPE_STRING, None), ("name", 10, F.TYPE_STRING, None)])
    message("TrackEvent", [("debug_annotations", 4, F.TYPE_MESSAGE, "DebugAnnotation"), ("type", 9, F.TYPE_INT32, None),
                           ("track_uuid", 11, F.TYPE_UINT64, None), ("name", 23, F.TYPE_STRING, None)])
    message("TracePacket", [("timestamp", 8, F.TYPE_UINT64, None), ("trusted_packet_sequence_id", 10, F.TYPE_UINT32, None),
                            ("track_event", 11, F.TYPE_MESSAGE, "TrackEvent"), ("sequence_flags", 13, F.TYPE_UINT32, None),
                            ("track_descriptor", 60, F.TYPE_MESSAGE, "TrackDescriptor")])
    message("Trace", [("packet", 1, F.TYPE_MESSAGE, "TracePacket")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    Trace = message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("perfetto.protos.Trace"))
    trace = Trace()
    with open(path, "rb") as f:
        trace.ParseFromString(f.read())

    tids, threads, stacks, last, process, ends = {}, {}, {}, {}, None, {}
    for index, packet in enumerate(trace.packet):
        if packet.trusted_packet_sequence_id == 0:
            fail("packet %d has no sequence id" % index)
        if index == 0 and packet.sequence_flags != 1:
            fail("the first packet does not clear the incremental state")
        if packet.HasField("track_descriptor"):
            d = packet.track_descriptor
            if d.HasField("process"):
                process = d.process.process_name
            if d.HasField("thread"):
                if d.parent_uuid == 0:
                    fail("thread track without its process track")
                tids[d.uuid] = d.thread.tid
            continue
        if not packet.HasField("track_event"):
            fail("packet %d is neither a descriptor nor an event" % index)
        event = packet.track_event
        if event.track_uuid not in tids:
            fail("event on an undescribed track %d" % event.track_uuid)
        tid = tids[event.track_uuid]
        if packet.timestamp < last.get(tid, 0):
            fail("timestamp goes back on thread %d" % tid)
        last[tid] = packet.timestamp
        stack = stacks.setdefault(tid, [])
        if event.type == 1:
            threads.setdefault(str(tid), []).append([event.name, len(stack)])
            stack.append(event.name)
        elif event.type == 2:
            if not stack:
                fail("SLICE_END without SLICE_BEGIN on thread %d" % tid)
            stack.pop()
            for annotation in event.debug_annotations:
                if annotation.name == "end":
                    ends[annotation.string_value] = ends.get(annotation.string_value, 0) + 1
        elif event.type != 3:
            fail("unexpected event type %d" % event.type)
    for tid, stack in stacks.items():
        if stack:
            fail("thread %d ends with open slices %r" % (tid, stack))
    return {"threads": threads, "process": process, "ends": ends}


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    print(json.dumps(chrome(path) if kind == "chrome" else perfetto(path), sort_keys=True))
