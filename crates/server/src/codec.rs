//! The protobuf codec of every gRPC service here: tonic's prost codec with smaller buffers.
//!
//! tonic gives each call an 8 KiB buffer to decode the request into and another to encode
//! the response into. etcd's messages are mostly far smaller (a 256-byte put is about 300
//! bytes, its answer about 30), and at tens of thousands of calls per second those buffers
//! are most of what a call allocates: a profile at 256 clients had the members' threads
//! spending 3% of their samples faulting in fresh pages under the response buffer's
//! allocation. Buffers still grow to fit a larger message (up to `--max-request-bytes`).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec, ProstCodec};

/// Initial buffer size per call; larger messages grow it.
const BUFFER_BYTES: usize = 1024;

/// How much a streaming call encodes before yielding to the runtime (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_BYTES`] buffers. Named in `build.rs` as the services' codec.
#[derive(Debug)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }
}
