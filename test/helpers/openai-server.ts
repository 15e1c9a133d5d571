// The loopback OpenAI-compatible server lives in scripts/harness/ (scripts use it as a stand-in closed model too).
export * from '../../scripts/harness/openai-server.js';
