//! The few messages of Envoy's rate limit service v3 (`envoy.service.ratelimit.v3`,
//! `envoy.extensions.common.ratelimit.v3`) as hand-written prost structs, field numbers
//! from the .proto files; no protoc. Only what the filter sends and reads.

/// gRPC service name.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// gRPC method.
pub const METHOD: &str = "ShouldRateLimit";

/// `RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    /// Domain of the limits.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// One per global rule; OVER_LIMIT if any is.
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Units this request costs (0 is read as 1 by servers).
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    /// Key/value pairs.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// Per-descriptor cost (`google.protobuf.UInt64Value`).
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// Descriptor key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Descriptor value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.UInt64Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UInt64Value {
    /// The value.
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `RateLimitResponse` (fields the filter reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    /// Overall code: 0 UNKNOWN, 1 OK, 2 OVER_LIMIT.
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    /// Per descriptor, in request order.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    /// Code of this descriptor.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The limit that applied.
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<CurrentLimit>,
    /// Units left.
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    /// Time until the limit resets (`google.protobuf.Duration`).
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<ProtoDuration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CurrentLimit {
    /// Requests per unit.
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// 1 SECOND, 2 MINUTE, 3 HOUR, 4 DAY, 5 MONTH, 6 YEAR, 7 WEEK.
    #[prost(int32, tag = "2")]
    pub unit: i32,
    /// Name of the limit.
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    /// Seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ProtoDuration {
    /// As nanoseconds (negative = 0).
    pub fn as_nanos(&self) -> u64 {
        let s = u64::try_from(self.seconds).unwrap_or(0);
        let n = u64::try_from(self.nanos).unwrap_or(0);
        s.saturating_mul(1_000_000_000).saturating_add(n)
    }
}

/// `Code` values.
pub mod code {
    /// OK.
    pub const OK: i32 = 1;
    /// OVER_LIMIT.
    pub const OVER_LIMIT: i32 = 2;
}
