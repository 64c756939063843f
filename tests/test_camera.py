"""balancehead.camera against the official EG3D sampler (golden labels) and its own round trips."""
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from balancehead.camera import (camera_label, camera_origin, from_eg3d_angles, label_to_fov, label_to_radius,
                                label_to_yaw_pitch, to_eg3d_angles, wrap_yaw)

GOLDEN = Path(__file__).parent / "data" / "golden" / "camera.safetensors"


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDEN))


def test_labels_match_eg3d_lookat_pose_sampler(golden):
    """Made by scripts/golden/make_camera_golden.py from NVlabs/eg3d camera_utils (non-zero pivots included)."""
    for h, v, r, fov, pivot, want in zip(golden["h"], golden["v"], golden["radius"], golden["fov_deg"],
                                         golden["pivot"], golden["label"]):
        yaw, pitch = from_eg3d_angles(h, v)
        got = camera_label(yaw, pitch, float(r), float(fov), tuple(pivot))
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_official_labels_read_back_as_the_sampler_angles(golden):
    for h, v, r, fov, label in zip(golden["h"], golden["v"], golden["radius"], golden["fov_deg"], golden["label"]):
        yaw, pitch = label_to_yaw_pitch(label)
        want_yaw, want_pitch = from_eg3d_angles(h, v)
        assert abs(wrap_yaw(yaw - want_yaw)) < 1e-3 or abs(pitch) > 89.0  # yaw undefined at the poles
        assert pitch == pytest.approx(want_pitch, abs=1e-3)
        assert label_to_radius(label) == pytest.approx(float(r), abs=1e-5)
        assert label_to_fov(label) == pytest.approx(float(fov), abs=1e-4)


def test_camera_sits_on_a_sphere_around_the_world_origin_not_the_pivot():
    front = camera_label(0.0, 0.0, pivot=(0.0, 0.0, 0.2))
    np.testing.assert_allclose(front[[3, 7, 11]], [0.0, 0.0, 2.7], atol=1e-6)
    np.testing.assert_allclose(front[[2, 6, 10]], [0.0, 0.0, -1.0], atol=1e-6)  # looks along -z at the pivot
    lab = camera_label(40.0, 20.0, pivot=(0.1, -0.2, 0.3))
    assert np.linalg.norm(lab[[3, 7, 11]]) == pytest.approx(2.7, abs=1e-5)
    to_pivot = np.array([0.1, -0.2, 0.3]) - lab[[3, 7, 11]]
    np.testing.assert_allclose(lab[[2, 6, 10]], to_pivot / np.linalg.norm(to_pivot), atol=1e-6)


@pytest.mark.parametrize("pivot", [(0.0, 0.0, 0.2), (0.0, 0.0, 0.0), (0.07, -0.12, 0.25)])
def test_label_round_trips_yaw_and_true_elevation(pivot):
    for yaw in np.arange(-180.0, 181.0, 15.0):
        for pitch in (-80.0, -45.0, -26.0, -20.0, -5.0, 0.0, 3.0, 20.0, 26.0, 60.0, 85.0):
            got_yaw, got_pitch = label_to_yaw_pitch(camera_label(yaw, pitch, 2.9, 15.0, pivot))
            assert got_pitch == pytest.approx(pitch, abs=1e-4)
            assert abs(wrap_yaw(got_yaw - yaw)) < 1e-4


def test_pitch_is_true_elevation():
    # elevation e puts the camera at height r sin(e) and horizontal distance r cos(e)
    o = camera_origin(30.0, -20.0, 2.7)
    assert o[1] == pytest.approx(2.7 * np.sin(np.radians(-20.0)))
    assert np.hypot(o[0], o[2]) == pytest.approx(2.7 * np.cos(np.radians(-20.0)))
    assert o[0] > 0  # +yaw: the subject's left (+x)


def test_eg3d_angle_conversion_round_trips():
    yaws = np.arange(-179.0, 181.0, 7.0)
    pitches = np.linspace(-85.0, 85.0, yaws.size)
    h, v = to_eg3d_angles(yaws, pitches)
    np.testing.assert_allclose(to_eg3d_angles(0.0, 0.0), (np.pi / 2, np.pi / 2))
    y2, p2 = from_eg3d_angles(h, v)
    np.testing.assert_allclose(y2, yaws, atol=1e-9)
    np.testing.assert_allclose(p2, pitches, atol=1e-9)
    # EG3D's v = pi/2 - 26 deg (a common "pitch range" in EG3D scripts) is only ~16.8 deg of elevation
    assert from_eg3d_angles(np.pi / 2, np.pi / 2 - np.radians(26.0))[1] == pytest.approx(16.8, abs=0.1)
