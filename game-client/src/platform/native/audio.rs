//! The desktop's call audio devices: the microphone and the speakers through `cpal`, or a
//! synthetic tone instead of the microphone (`DUET_FAKE_AUDIO=tone`, for tests and machines
//! without a sound card, like Chromium's `--use-fake-device-for-media-stream`; `none` plays a
//! machine without a microphone).
//!
//! Everything here speaks 48 kHz mono `f32`, the rate Opus runs at in WebRTC; devices at other
//! rates or with more channels are converted on the way in and out (linear interpolation is
//! plenty for speech). Device streams live on a thread of their own, because `cpal` streams
//! may not move between threads on every platform; dropping [`Devices`] ends them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};
use duet_shared::call::CallEnd;

/// The sample rate of everything in the call path.
pub const RATE: u32 = 48_000;
/// Samples in one 20 ms Opus frame at [`RATE`].
pub const FRAME: usize = 960;
/// At most this much audio waits in either direction (200 ms): a late reader loses the oldest
/// audio rather than drifting further behind.
const MAX_BUFFERED: usize = RATE as usize / 5;

/// Audio waiting between a device callback and the call.
type Buffer = Arc<Mutex<VecDeque<f32>>>;

/// Where the call's outgoing audio comes from, and where the peer's goes.
pub struct Devices {
    source: Source,
    /// The peer's decoded audio for the speakers; `None` without speakers (or with a fake
    /// microphone, which is for tests: their machines have no speakers either).
    speaker: Option<Buffer>,
    /// Closing it ends the device thread, which drops the streams.
    _stop: Option<std::sync::mpsc::Sender<()>>,
}

enum Source {
    /// A 440 Hz tone at a third of full scale.
    Tone { phase: f32 },
    /// What the microphone recorded, already at [`RATE`] mono.
    Microphone(Buffer),
}

impl Devices {
    /// Opens the microphone (and the speakers when there are any), or the tone when
    /// `DUET_FAKE_AUDIO=tone`. No microphone is a call that cannot start, in words.
    pub fn open() -> Result<Self, CallEnd> {
        match std::env::var("DUET_FAKE_AUDIO").as_deref() {
            Ok("tone") => {
                return Ok(Self {
                    source: Source::Tone { phase: 0.0 },
                    speaker: None,
                    _stop: None,
                });
            }
            // A machine without a microphone, for tests of what the person is told.
            Ok("none") => return Err(CallEnd::NoMicrophone),
            _ => {}
        }
        let microphone: Buffer = Arc::default();
        let speaker: Buffer = Arc::default();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready, opened) = std::sync::mpsc::channel::<Result<bool, CallEnd>>();
        let (mic, out) = (microphone.clone(), speaker.clone());
        std::thread::Builder::new()
            .name("duet-audio".into())
            .spawn(move || {
                let host = cpal::default_host();
                let input = match host.default_input_device() {
                    Some(device) => open_input(&device, mic),
                    None => Err(CallEnd::NoMicrophone),
                };
                let input = match input {
                    Ok(stream) => stream,
                    Err(why) => {
                        let _ = ready.send(Err(why));
                        return;
                    }
                };
                // No speakers is not a reason to refuse a call: the peer still hears us.
                let output = host
                    .default_output_device()
                    .and_then(|device| open_output(&device, out).ok());
                let _ = ready.send(Ok(output.is_some()));
                // Holds the streams until the call ends.
                let _ = stopped.recv();
                drop((input, output));
            })
            .map_err(|_| CallEnd::MediaFailed)?;
        let has_speaker = opened.recv().map_err(|_| CallEnd::MediaFailed)??;
        Ok(Self {
            source: Source::Microphone(microphone),
            speaker: has_speaker.then_some(speaker),
            _stop: Some(stop),
        })
    }

    /// The next 20 ms of our audio; silence where the microphone has not delivered yet.
    pub fn next_frame(&mut self, frame: &mut [f32; FRAME]) {
        match &mut self.source {
            Source::Tone { phase } => {
                let step = 440.0 * std::f32::consts::TAU / RATE as f32;
                for sample in frame.iter_mut() {
                    *sample = phase.sin() / 3.0;
                    *phase = (*phase + step) % std::f32::consts::TAU;
                }
            }
            Source::Microphone(buffer) => {
                let mut buffer = lock(buffer);
                for sample in frame.iter_mut() {
                    *sample = buffer.pop_front().unwrap_or(0.0);
                }
            }
        }
    }

    /// Hands the peer's decoded audio to the speakers (if any).
    pub fn play(&self, samples: &[f32]) {
        if let Some(speaker) = &self.speaker {
            push_bounded(speaker, samples.iter().copied());
        }
    }
}

/// `notes` as samples at [`RATE`]: sines at a fifth of full scale, each faded in and out over
/// 10 ms so no note clicks.
pub fn render(notes: &[crate::ports::Note]) -> Vec<f32> {
    let ms = |ms: u32| ms as usize * RATE as usize / 1000;
    let end = notes.iter().map(|n| ms(n.at_ms + n.ms)).max().unwrap_or(0);
    let mut out = vec![0.0f32; end];
    let fade = ms(10).max(1);
    for note in notes {
        let (start, len) = (ms(note.at_ms), ms(note.ms));
        let step = note.hz * std::f32::consts::TAU / RATE as f32;
        for i in 0..len {
            let envelope = (i.min(len - i) as f32 / fade as f32).min(1.0);
            out[start + i] += (i as f32 * step).sin() * 0.2 * envelope;
        }
    }
    out
}

/// Plays `notes` on the default speakers, on a thread of its own that ends with the sound;
/// nothing without speakers (or with `DUET_FAKE_AUDIO` set: test machines have none).
pub fn play_notes(notes: &'static [crate::ports::Note]) {
    if std::env::var_os("DUET_FAKE_AUDIO").is_some() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("duet-sound".into())
        .spawn(move || {
            let samples = render(notes);
            let length = std::time::Duration::from_millis(
                samples.len() as u64 * 1000 / u64::from(RATE) + 100,
            );
            let buffer: Buffer = Arc::new(Mutex::new(samples.into()));
            let Some(device) = cpal::default_host().default_output_device() else {
                return;
            };
            if let Ok(stream) = open_output(&device, buffer) {
                std::thread::sleep(length);
                drop(stream);
            }
        });
}

/// Peak level of some audio, 0..1: what the speaking rings and the tests read, like the
/// browser's `audioLevel`.
pub fn level(samples: &[f32]) -> f64 {
    samples.iter().fold(0.0f32, |m, s| m.max(s.abs())).min(1.0) as f64
}

/// Locks `mutex`, also after a panic elsewhere: the audio behind it is still usable, and a call
/// must not end because one callback panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn push_bounded(buffer: &Buffer, samples: impl Iterator<Item = f32>) {
    let mut buffer = lock(buffer);
    buffer.extend(samples);
    let excess = buffer.len().saturating_sub(MAX_BUFFERED);
    buffer.drain(..excess);
}

/// Converts between a device's rate and [`RATE`] by linear interpolation, keeping its
/// position across callbacks.
struct Resampler {
    /// Input samples per output sample.
    step: f64,
    /// Position of the next output sample, in input samples past `last`.
    at: f64,
    last: f32,
}

impl Resampler {
    fn new(from: u32, to: u32) -> Self {
        Self {
            step: from as f64 / to as f64,
            at: 0.0,
            last: 0.0,
        }
    }

    fn run(&mut self, input: &[f32], mut out: impl FnMut(f32)) {
        for &next in input {
            while self.at < 1.0 {
                out(self.last + (next - self.last) * self.at as f32);
                self.at += self.step;
            }
            self.at -= 1.0;
            self.last = next;
        }
    }
}

fn open_input(device: &cpal::Device, into: Buffer) -> Result<cpal::Stream, CallEnd> {
    let config = device
        .default_input_config()
        .map_err(|_| CallEnd::NoMicrophone)?;
    let format = config.sample_format();
    let config: cpal::StreamConfig = config.into();
    let stream = match format {
        cpal::SampleFormat::F32 => input_stream::<f32>(device, &config, into),
        cpal::SampleFormat::I16 => input_stream::<i16>(device, &config, into),
        cpal::SampleFormat::I32 => input_stream::<i32>(device, &config, into),
        cpal::SampleFormat::U16 => input_stream::<u16>(device, &config, into),
        _ => return Err(CallEnd::NoMicrophone),
    }
    .map_err(|_| CallEnd::NoMicrophone)?;
    stream.play().map_err(|_| CallEnd::NoMicrophone)?;
    Ok(stream)
}

fn input_stream<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    into: Buffer,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = config.channels.max(1) as usize;
    let mut resample = Resampler::new(config.sample_rate, RATE);
    let mut mono = Vec::new();
    let mut converted = Vec::new();
    device.build_input_stream(
        *config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            mono.clear();
            mono.extend(data.chunks(channels).map(|frame| {
                frame
                    .iter()
                    .map(|s| <f32 as FromSample<T>>::from_sample_(*s))
                    .sum::<f32>()
                    / channels as f32
            }));
            converted.clear();
            resample.run(&mono, |s| converted.push(s));
            push_bounded(&into, converted.iter().copied());
        },
        |e| bevy::log::warn!("microphone: {e}"),
        None,
    )
}

fn open_output(device: &cpal::Device, from: Buffer) -> Result<cpal::Stream, CallEnd> {
    let config = device
        .default_output_config()
        .map_err(|_| CallEnd::MediaFailed)?;
    let format = config.sample_format();
    let config: cpal::StreamConfig = config.into();
    let stream = match format {
        cpal::SampleFormat::F32 => output_stream::<f32>(device, &config, from),
        cpal::SampleFormat::I16 => output_stream::<i16>(device, &config, from),
        cpal::SampleFormat::I32 => output_stream::<i32>(device, &config, from),
        cpal::SampleFormat::U16 => output_stream::<u16>(device, &config, from),
        _ => return Err(CallEnd::MediaFailed),
    }
    .map_err(|_| CallEnd::MediaFailed)?;
    stream.play().map_err(|_| CallEnd::MediaFailed)?;
    Ok(stream)
}

fn output_stream<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    from: Buffer,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = config.channels.max(1) as usize;
    let mut resample = Resampler::new(RATE, config.sample_rate);
    let mut pending: VecDeque<f32> = VecDeque::new();
    let mut taken = Vec::new();
    device.build_output_stream(
        *config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            let frames = data.len() / channels;
            // Pull 48 kHz audio until the device's rate has enough for this callback.
            while pending.len() < frames {
                taken.clear();
                {
                    let mut buffer = lock(&from);
                    let n = buffer.len().min(FRAME);
                    taken.extend(buffer.drain(..n));
                }
                if taken.is_empty() {
                    break;
                }
                resample.run(&taken, |s| pending.push_back(s));
            }
            for frame in data.chunks_mut(channels) {
                let value = T::from_sample(pending.pop_front().unwrap_or(0.0));
                frame.fill(value);
            }
        },
        |e| bevy::log::warn!("speakers: {e}"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sounds_render_their_notes_quietly_and_without_clicks() {
        let ring = render(crate::ports::Sound::Ring.notes());
        // Four notes of 180 ms from 0 to 840 ms.
        assert_eq!(ring.len(), 840 * RATE as usize / 1000);
        assert!(
            level(&ring) > 0.15 && level(&ring) <= 0.201,
            "{}",
            level(&ring)
        );
        // Each note starts and ends near silence (the fades) and is silent between notes.
        assert!(ring[0].abs() < 0.01 && ring[ring.len() - 1].abs() < 0.01);
        let gap = 200 * RATE as usize / 1000;
        assert_eq!(level(&ring[gap..gap + 100]), 0.0);
    }

    #[test]
    fn resampling_keeps_the_duration_and_the_shape() {
        let input: Vec<f32> = (0..44_100).map(|i| (i as f32 / 100.0).sin()).collect();
        let mut out = Vec::new();
        let mut resample = Resampler::new(44_100, RATE);
        for piece in input.chunks(441) {
            resample.run(piece, |s| out.push(s));
        }
        assert!((out.len() as i64 - RATE as i64).abs() <= 2, "{}", out.len());
        // Same signal at the same time: sample 48,000 * t ≈ input 44,100 * t.
        let t = 0.5;
        let (a, b) = (
            out[(RATE as f64 * t) as usize],
            input[(44_100.0 * t) as usize],
        );
        assert!((a - b).abs() < 0.02, "{a} vs {b}");
    }

    #[test]
    fn the_fake_microphone_is_a_tone_at_a_third_of_full_scale() {
        let mut devices = Devices {
            source: Source::Tone { phase: 0.0 },
            speaker: None,
            _stop: None,
        };
        let mut frame = [0.0; FRAME];
        devices.next_frame(&mut frame);
        let peak = level(&frame);
        assert!((peak - 1.0 / 3.0).abs() < 0.01, "{peak}");
        // 440 Hz over 20 ms: 8.8 periods, so about 17-18 zero crossings.
        let crossings = frame
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((16..=19).contains(&crossings), "{crossings}");
    }

    #[test]
    fn buffers_drop_the_oldest_audio_beyond_200_ms() {
        let buffer: Buffer = Arc::default();
        push_bounded(&buffer, (0..MAX_BUFFERED + 10).map(|i| i as f32));
        let buffer = buffer.lock().unwrap();
        assert_eq!(buffer.len(), MAX_BUFFERED);
        assert_eq!(buffer.front().copied(), Some(10.0));
    }
}
