/// The text poke's records of sites in normal form, by address: a
/// dictionary whose key hashes with one multiply instead of SipHash.
///
/// A batch of 60,000 relocated prologues looks up and inserts every site
/// (and its restore looks up and removes every one): with `UInt` keys,
/// Hasher's SipHash was half the cost of those operations. The keys are
/// code addresses the poker wrote itself, never chosen by an adversary,
/// so a keyed hash buys nothing here; the multiply-xorshift below (a
/// Fibonacci hash, mixed by the dictionary's per-instance seed) spreads
/// them over the buckets, whose index Swift takes from the low bits.
struct SiteRecords {
    struct Key: Hashable {
        var address: UInt

        func hash(into hasher: inout Hasher) { hasher.combine(address) }

        func _rawHashValue(seed: Int) -> Int {
            var h = (UInt64(address) ^ UInt64(UInt(bitPattern: seed))) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            return Int(truncatingIfNeeded: h)
        }
    }

    private(set) var storage: [Key: TextPoker.SiteRecord] = [:]

    var count: Int { storage.count }
    var addresses: some Sequence<UInt> { storage.keys.lazy.map(\.address) }

    subscript(address: UInt) -> TextPoker.SiteRecord? {
        get { storage[Key(address: address)] }
        set { storage[Key(address: address)] = newValue }
    }

    mutating func reserveCapacity(_ capacity: Int) { storage.reserveCapacity(capacity) }

    /// Changes the record at `address` in place (one look-up); false when
    /// there is none.
    mutating func update(_ address: UInt, _ change: (inout TextPoker.SiteRecord) -> Void) -> Bool {
        guard let index = storage.index(forKey: Key(address: address)) else { return false }
        change(&storage.values[index])
        return true
    }
}
