"""A dpkg status database with known packages, for the SBOM and supply-chain tests: two installed
packages and one removed with its config files left (which an SBOM must not list)."""

from __future__ import annotations

STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5

Package: libold1
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: zlib1g
Status: install ok installed
Architecture: amd64
Version: 1:1.2.13.dfsg-1
"""
INSTALLED = ("base-files", "zlib1g")
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
