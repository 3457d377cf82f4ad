"""The package manifest's parsing and the diff between two builds' package lists."""

from __future__ import annotations

import pytest

from imagematrix.reports.packages import PackagesError, diff, parse_listing


def test_a_listing_parses_into_python_and_debian():
    text = '{"torch": "2.15.0", "Jinja2": "3.1.6"}\n---\nlibc6 2.41-12\npython3.13 3.13.5-2\n'
    assert parse_listing(text) == {
        "python": {"Jinja2": "3.1.6", "torch": "2.15.0"},
        "debian": {"libc6": "2.41-12", "python3.13": "3.13.5-2"},
        "system": {},
    }
    assert parse_listing("{}\n---\n") == {"python": {}, "debian": {}, "system": {}}  # no python, no dpkg


def test_the_listing_names_the_architecture_and_distribution_a_deb_purl_needs():
    text = "{}\n---\nlibc6 2.41-12\n---\narch=arm64\nid=debian\ndistro=debian-13\n"
    assert parse_listing(text)["system"] == {"arch": "arm64", "id": "debian", "distro": "debian-13"}
    assert parse_listing("{}\n---\n---\narch=\nid=\ndistro=-\n")["system"] == {}  # no dpkg, no os-release


def test_an_unreadable_listing_is_an_error_not_a_crash():
    with pytest.raises(PackagesError, match="unreadable package listing"):
        parse_listing("sh: 1: python3: not found\n")


def test_the_diff_names_added_removed_and_changed_packages():
    old = {"python": {"torch": "2.14.0", "numpy": "2.5.5"}, "debian": {"g++": "4:14.2.0-1"}}
    new = {"python": {"torch": "2.15.0", "triton": "3.7.0"}, "debian": {"g++": "4:14.2.0-1"}}
    assert diff(old, new) == ["- python numpy 2.5.5", "~ python torch 2.14.0 -> 2.15.0", "+ python triton 3.7.0"]
    assert diff(new, new) == []
