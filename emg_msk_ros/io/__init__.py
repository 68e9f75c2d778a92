"""Recordings, data-set loaders, EMG sources and rosbag2 sessions."""
