// DigitalTwinStorage.sol
pragma solidity ^0.8.0;

contract DigitalTwinStorage {
    struct TwinData {
        string id;
        string timestamp;
        string dataHash; // Stores the hash of digital twin data
    }

    mapping(string => TwinData) private twins;
    event TwinUpdated(string indexed id, string timestamp, string dataHash);

    function updateTwin(string memory _id, string memory _timestamp, string memory _dataHash) public {
        twins[_id] = TwinData(_id, _timestamp, _dataHash);
        emit TwinUpdated(_id, _timestamp, _dataHash);
    }

    function getTwin(string memory _id) public view returns (string memory, string memory, string memory) {
        TwinData memory twin = twins[_id];
        return (twin.id, twin.timestamp, twin.dataHash);
    }
}
