// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title TwinLedger: append-only anchoring of an RFC 9162 Merkle log of digital twin records.
/// @notice Stores tree heads (size, root) of an RFC 9162 section 2.1 Merkle tree. A new head is
/// accepted only from an account with ANCHORER_ROLE and only if a consistency proof shows that it
/// extends the last anchored head, so anchored history cannot be rewritten, not even by the
/// operator. Nothing about a twin is stored: roots over salted leaves reveal nothing.
contract TwinLedger is AccessControl {
    /// @notice Role allowed to anchor new heads.
    bytes32 public constant ANCHORER_ROLE = keccak256("ANCHORER_ROLE");

    /// @dev One anchored head: its root, and when it was anchored. Fits one slot plus the root.
    struct Anchor {
        bytes32 root;
        uint64 timestamp;
        uint64 blockNumber;
    }

    /// @dev Size of the latest anchored tree; its root is in _anchors[_latestSize].
    uint64 private _latestSize;
    mapping(uint64 => Anchor) private _anchors;

    /// @notice A new head was anchored.
    event Anchored(uint64 indexed size, bytes32 root, uint64 previousSize);

    /// @notice The proposed size does not exceed the latest anchored size.
    error SizeNotGrowing(uint64 latestSize, uint64 proposedSize);
    /// @notice The consistency proof does not show that the new head extends the latest one.
    error InconsistentHead(uint64 latestSize, uint64 proposedSize);
    /// @notice The first anchor carries a consistency proof, or a root is zero.
    error MalformedAnchor();

    constructor(address admin, address anchorer) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        if (anchorer != address(0)) {
            _grantRole(ANCHORER_ROLE, anchorer);
        }
    }

    /// @notice Anchors the head (size, root). From the second anchor on, `proof` must be the
    /// RFC 9162 consistency proof from the latest anchored head to this one.
    function anchor(uint64 size, bytes32 root, bytes32[] calldata proof) external onlyRole(ANCHORER_ROLE) {
        uint64 latest = _latestSize;
        if (size <= latest) revert SizeNotGrowing(latest, size);
        if (root == bytes32(0)) revert MalformedAnchor();
        if (latest == 0) {
            if (proof.length != 0) revert MalformedAnchor();
        } else if (!_verifyConsistency(latest, size, _anchors[latest].root, root, proof)) {
            revert InconsistentHead(latest, size);
        }
        _latestSize = size;
        _anchors[size] = Anchor(root, uint64(block.timestamp), uint64(block.number));
        emit Anchored(size, root, latest);
    }

    /// @notice The latest anchored head; size 0 and a zero root before the first anchor.
    function latestHead() external view returns (uint64 size, bytes32 root) {
        size = _latestSize;
        root = _anchors[size].root;
    }

    /// @notice The root anchored for tree size `size` and when; a zero root if none was.
    function anchoredRoot(uint64 size) external view returns (bytes32 root, uint64 timestamp, uint64 blockNumber) {
        Anchor storage a = _anchors[size];
        return (a.root, a.timestamp, a.blockNumber);
    }

    /// @notice Whether `leafHash` is the leaf at `index` of the anchored tree of size `size`,
    /// by the RFC 9162 section 2.1.3.2 inclusion proof `proof`.
    function verifyInclusion(uint64 index, uint64 size, bytes32 leafHash, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _anchors[size].root;
        if (root == bytes32(0) || index >= size) return false;
        uint64 fn = index;
        uint64 sn = size - 1;
        bytes32 r = leafHash;
        for (uint256 i = 0; i < proof.length; i++) {
            if (sn == 0) return false;
            if (fn & 1 == 1 || fn == sn) {
                r = _node(proof[i], r);
                while (fn & 1 == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            } else {
                r = _node(r, proof[i]);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return sn == 0 && r == root;
    }

    /// @dev RFC 9162 section 2.1.4.2, for 0 < first < second.
    function _verifyConsistency(uint64 first, uint64 second, bytes32 firstRoot, bytes32 secondRoot, bytes32[] calldata proof)
        private
        view
        returns (bool)
    {
        if (proof.length == 0) return false;
        uint256 i = 0;
        bytes32 fr;
        bytes32 sr;
        // A power-of-two first tree is itself a node of the second: the proof starts after it.
        if (first & (first - 1) == 0) {
            fr = firstRoot;
        } else {
            fr = proof[0];
            i = 1;
        }
        sr = fr;
        uint64 fn = first - 1;
        uint64 sn = second - 1;
        while (fn & 1 == 1) {
            fn >>= 1;
            sn >>= 1;
        }
        for (; i < proof.length; i++) {
            bytes32 c = proof[i];
            if (sn == 0) return false;
            if (fn & 1 == 1 || fn == sn) {
                fr = _node(c, fr);
                sr = _node(c, sr);
                while (fn & 1 == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            } else {
                sr = _node(sr, c);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return fr == firstRoot && sr == secondRoot && sn == 0;
    }

    /// @dev RFC 9162 interior node hash: SHA-256(0x01 || left || right), by the precompile.
    function _node(bytes32 left, bytes32 right) private pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x01), left, right));
    }
}
