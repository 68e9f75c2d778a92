"""Sessions on disk: a :class:`Recording` as a rosbag2 (MCAP) bag, written and read with rosbags.

A session bag holds the topics a live pipeline would see, with bag timestamps equal to the
time each message's data became available:

- ``/emg/raw`` (emg_msk_ros/EmgArray): raw EMG in chunks, sequence-indexed;
- ``/joint_states`` (sensor_msgs/JointState): what the exoskeleton's joint sensor reports,
  angle (rad) and velocity (rad/s) — a simulated encoder, or the recording's goniometer;
- ``/session/truth/joint_states`` (sensor_msgs/JointState, simulation only): the true angle,
  velocity and net muscle moment (N·m, in ``effort``), kept apart from the sensor's topic;
- ``/msk/muscle_states`` (emg_msk_ros/MuscleState): true muscle states (simulation only);
- ``/session/metadata`` (std_msgs/String): one YAML document (schema, channels, joint,
  muscles, and the generator's or importer's metadata).

Writing is deterministic: the same recording gives a byte-identical bag. A bag without the
truth topic (real recordings, and simulated sessions written before the encoder existed) reads
``/joint_states`` as the labels: ``Recording.angle`` and friends, with no separate measurement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.serde import SerdeError

from emg_msk_ros import __version__
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.typestore import ns_to_stamp, stamp_to_ns, typestore

SCHEMA = "emg_msk_ros/session/1"
TOPIC_EMG = "/emg/raw"
TOPIC_JOINT = "/joint_states"
TOPIC_MUSCLES = "/msk/muscle_states"
TOPIC_TRUTH = "/session/truth/joint_states"
TOPIC_METADATA = "/session/metadata"
TYPES = {
    TOPIC_EMG: "emg_msk_ros/msg/EmgArray",
    TOPIC_JOINT: "sensor_msgs/msg/JointState",
    TOPIC_MUSCLES: "emg_msk_ros/msg/MuscleState",
    TOPIC_TRUTH: "sensor_msgs/msg/JointState",
    TOPIC_METADATA: "std_msgs/msg/String",
}
_NEVER = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)


def qos(sensor_data: bool) -> Qos:
    """The QoS profile a topic is offered with: sensor data (best effort) or reliable."""
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=5 if sensor_data else 10,
        reliability=QosReliability.BEST_EFFORT if sensor_data else QosReliability.RELIABLE,
        durability=QosDurability.VOLATILE,
        deadline=_NEVER,
        lifespan=_NEVER,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_NEVER,
        avoid_ros_namespace_conventions=False,
    )


# What rosbags (and the YAML inside) raise on a truncated or corrupt bag file.
UNREADABLE_BAG = (ReaderError, SerdeError, UnicodeDecodeError, yaml.YAMLError)


class SessionError(ValueError):
    """A session bag that cannot be read as a session; the message names the topic or field."""


def _header(ns: int, frame_id: str = ""):
    header_cls = typestore().types["std_msgs/msg/Header"]
    return header_cls(stamp=ns_to_stamp(ns), frame_id=frame_id)


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def _metadata_document(recording: Recording) -> str:
    document = {
        "schema": SCHEMA,
        "writer": f"emg_msk_ros {__version__}",
        "sample_rate": float(recording.sample_rate),
        "channel_names": list(recording.channel_names),
        "joint_name": recording.joint_name,
        "muscle_names": list(recording.muscle_names),
        "start_time": float(recording.start_time),
        "metadata": recording.metadata,
    }
    return yaml.safe_dump(document, sort_keys=True)


def write_recording(path: str | Path, recording: Recording, chunk_size: int = 20) -> Path:
    """Write ``recording`` to a new bag folder ``path`` (MCAP); return the path.

    EMG goes out in chunks of ``chunk_size`` samples, each stamped with its first sample's time
    and written at the time its last sample was acquired.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose a new output folder")
    store = typestore()
    types = store.types
    measured = recording.measured_time is not None
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {
            topic: writer.add_connection(topic, msgtype, typestore=store,
                                         offered_qos_profiles=[qos(topic == TOPIC_EMG)])
            for topic, msgtype in TYPES.items()
            if topic in (TOPIC_EMG, TOPIC_METADATA)
            or (topic == TOPIC_JOINT and (recording.angle is not None or measured))
            or (topic == TOPIC_TRUTH and recording.angle is not None and measured)
            or (topic == TOPIC_MUSCLES and recording.force is not None)
        }
        start_ns = _ns(recording.start_time)
        writer.write(conns[TOPIC_METADATA], start_ns, store.serialize_cdr(
            types["std_msgs/msg/String"](data=_metadata_document(recording)),
            TYPES[TOPIC_METADATA]))

        emg_cls = types[TYPES[TOPIC_EMG]]
        n, n_channels = recording.emg.shape
        emg32 = recording.emg.astype(np.float32)
        for first in range(0, n, chunk_size):
            block = emg32[first:first + chunk_size]
            msg = emg_cls(
                header=_header(start_ns + _ns(first / recording.sample_rate)),
                sample_rate=float(recording.sample_rate),
                channel_names=list(recording.channel_names),
                num_samples=block.shape[0],
                first_sample_index=first,
                unit=emg_cls.UNIT_VOLT,
                data=np.ascontiguousarray(block).reshape(-1),
            )
            available = start_ns + _ns((first + block.shape[0] - 1) / recording.sample_rate)
            writer.write(conns[TOPIC_EMG], available, store.serialize_cdr(msg, TYPES[TOPIC_EMG]))

        if measured:
            _write_joint_states(writer, conns[TOPIC_JOINT], recording.joint_name,
                                recording.measured_time, recording.measured_angle,
                                recording.measured_velocity, None)
        if recording.angle is not None:
            _write_kinematics(writer, conns, recording,
                              conns[TOPIC_TRUTH] if measured else conns[TOPIC_JOINT])
    return path


def _write_joint_states(writer: Writer, conn, joint_name: str | None, times: np.ndarray,
                        angle: np.ndarray, velocity: np.ndarray | None,
                        effort: np.ndarray | None) -> None:
    """One JointState per sample, stamped and logged at its time (s)."""
    store = typestore()
    joint_cls = store.types[TYPES[TOPIC_JOINT]]
    empty = np.zeros(0)
    for k, t in enumerate(times):
        ns = _ns(t)
        joint = joint_cls(
            header=_header(ns),
            name=[joint_name or "joint"],
            position=np.array([angle[k]]),
            velocity=empty if velocity is None else np.array([velocity[k]]),
            effort=empty if effort is None else np.array([effort[k]]),
        )
        writer.write(conn, ns, store.serialize_cdr(joint, TYPES[TOPIC_JOINT]))


def _write_kinematics(writer: Writer, conns: dict, recording: Recording, joint_conn) -> None:
    store = typestore()
    muscle_cls = store.types[TYPES[TOPIC_MUSCLES]]
    _write_joint_states(writer, joint_conn, recording.joint_name, recording.kin_time,
                        recording.angle, recording.velocity, recording.net_moment)
    empty = np.zeros(0)
    for k, t in enumerate(recording.kin_time):
        ns = _ns(t)
        if TOPIC_MUSCLES in conns:
            muscles = muscle_cls(
                header=_header(ns),
                names=list(recording.muscle_names),
                joint_names=[recording.joint_name or "joint"],
                activation=(np.zeros(len(recording.muscle_names)) if recording.activation is None
                            else np.asarray(recording.activation[k], dtype=np.float64)),
                force=np.asarray(recording.force[k], dtype=np.float64),
                moment=(empty if recording.moment is None
                        else np.asarray(recording.moment[k], dtype=np.float64)),
            )
            writer.write(conns[TOPIC_MUSCLES], ns,
                         store.serialize_cdr(muscles, TYPES[TOPIC_MUSCLES]))


def _check_types(reader: Reader, path: Path) -> dict[str, object]:
    conns = {}
    for conn in reader.connections:
        expected = TYPES.get(conn.topic)
        if expected is not None and conn.msgtype != expected:
            raise SessionError(
                f"{path}: topic {conn.topic} has type {conn.msgtype}, expected {expected}")
        conns[conn.topic] = conn
    for topic in (TOPIC_EMG, TOPIC_METADATA):
        if topic not in conns:
            raise SessionError(f"{path}: required topic {topic} is missing from the bag")
    return conns


def read_recording(path: str | Path) -> Recording:
    """Read a session bag written by :func:`write_recording` (or recorded from a pipeline).

    Raises :class:`SessionError` naming the topic when a required topic is missing, has the
    wrong type or no messages, or when EMG chunks have gaps, overlaps or change channels/rate
    mid-stream; and naming the file when the bag is truncated or corrupt. A joint-state topic
    without messages reads as a session without kinematics.
    """
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise SessionError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    store = typestore()
    try:
        with Reader(path) as reader:
            conns = _check_types(reader, path)
            meta_msgs = list(reader.messages(connections=[conns[TOPIC_METADATA]]))
            if not meta_msgs:
                raise SessionError(f"{path}: topic {TOPIC_METADATA} has no messages")
            document = yaml.safe_load(
                store.deserialize_cdr(meta_msgs[0][2], TYPES[TOPIC_METADATA]).data)
            if not isinstance(document, dict) or document.get("schema") != SCHEMA:
                raise SessionError(f"{path}: {TOPIC_METADATA} is not a {SCHEMA} document")
            emg = _read_emg(reader, conns[TOPIC_EMG], document, path)
            kin = _read_kinematics(reader, conns, document)
    except UNREADABLE_BAG as exc:
        raise SessionError(f"{path}: cannot read the bag: {exc}") from exc
    return Recording(
        emg=emg,
        sample_rate=document["sample_rate"],
        channel_names=list(document["channel_names"]),
        start_time=document["start_time"],
        joint_name=document.get("joint_name"),
        muscle_names=list(document.get("muscle_names") or []),
        metadata=document.get("metadata") or {},
        **kin,
    )


def _read_emg(reader: Reader, conn, document: dict, path: Path) -> np.ndarray:
    store = typestore()
    channels = list(document["channel_names"])
    blocks, expected_index = [], 0
    for _, _, raw in reader.messages(connections=[conn]):
        msg = store.deserialize_cdr(raw, TYPES[TOPIC_EMG])
        if list(msg.channel_names) != channels or msg.sample_rate != document["sample_rate"]:
            raise SessionError(
                f"{path}: {TOPIC_EMG} chunk at sample {msg.first_sample_index} has channels "
                f"{list(msg.channel_names)} at {msg.sample_rate} Hz, the session declares "
                f"{channels} at {document['sample_rate']} Hz")
        if msg.first_sample_index != expected_index:
            raise SessionError(
                f"{path}: {TOPIC_EMG} expected sample {expected_index} next, got "
                f"{msg.first_sample_index} ({'gap' if msg.first_sample_index > expected_index else 'overlap'})")
        blocks.append(np.asarray(msg.data, dtype=np.float64).reshape(msg.num_samples, len(channels)))
        expected_index += msg.num_samples
    if not blocks:
        raise SessionError(f"{path}: topic {TOPIC_EMG} has no messages")
    return np.concatenate(blocks)


def _read_joint_states(reader: Reader, conn) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(stamps s, angle rad, velocity rad/s or None) of a JointState topic's messages."""
    store = typestore()
    times, angle, velocity = [], [], []
    for _, _, raw in reader.messages(connections=[conn]):
        msg = store.deserialize_cdr(raw, TYPES[TOPIC_JOINT])
        times.append(stamp_to_ns(msg.header.stamp) * 1e-9)
        angle.append(msg.position[0])
        velocity.append(msg.velocity[0] if len(msg.velocity) else np.nan)
    speed = None if not velocity or np.isnan(velocity).any() else np.array(velocity)
    return np.array(times), np.array(angle), speed


def _read_kinematics(reader: Reader, conns: dict, document: dict) -> dict:
    out = {}
    if TOPIC_TRUTH in conns and TOPIC_JOINT in conns:
        times, angle, velocity = _read_joint_states(reader, conns[TOPIC_JOINT])
        if len(times):
            if velocity is None:
                raise SessionError(f"{TOPIC_JOINT}: the measured joint states lack velocity")
            out.update(measured_time=times, measured_angle=angle, measured_velocity=velocity)
    labels = conns.get(TOPIC_TRUTH, conns.get(TOPIC_JOINT))
    if labels is None:
        return out
    times, angle, velocity = _read_joint_states(reader, labels)
    if not len(times):  # the topic without messages: a session without kinematics
        return out
    out.update(kin_time=times, angle=angle)
    if velocity is not None:
        out["velocity"] = velocity
    store = typestore()
    if TOPIC_MUSCLES in conns:
        fields = {"activation": [], "force": [], "moment": []}
        for _, _, raw in reader.messages(connections=[conns[TOPIC_MUSCLES]]):
            msg = store.deserialize_cdr(raw, TYPES[TOPIC_MUSCLES])
            for name, values in fields.items():
                values.append(np.asarray(getattr(msg, name), dtype=np.float64))
        for name, values in fields.items():
            if values and all(v.size for v in values):
                out[name] = np.stack(values)
    return out
